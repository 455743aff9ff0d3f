"""From recordings to feature vectors: the feature kinds, the GE2E speaker encoder, parallel
extraction (local workers or Ray tasks), and the feature store on disk."""
