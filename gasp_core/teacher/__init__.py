"""The image teacher: DINOv2 through timm, and the PCA that shrinks its features into targets."""
