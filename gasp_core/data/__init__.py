"""Dataset readers (AV2, nuScenes) on top of the datasets' own loaders; the normalized log store
(issue #3) builds on these."""
