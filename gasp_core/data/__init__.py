"""Dataset readers (AV2, nuScenes) on top of the datasets' own loaders; the normalized log store
(``gasp_core.data.store``) builds on these."""
