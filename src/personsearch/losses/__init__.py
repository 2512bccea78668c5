
from personsearch.losses.scale_invariant import scale_invariant_loss  # noqa: E402,F401  (SSL)
from personsearch.losses.multilabel import multilabel_loss  # noqa: E402,F401  (SSL)
from personsearch.losses.dicl import dicl_relation_kl_loss, dicl_similarity_loss, fuse_features  # noqa: E402,F401  (DICL)
from personsearch.losses.cluster_contrast import cluster_contrast_loss  # noqa: E402,F401  (CGPS)
from personsearch.losses.quaduplet import quaduplet_loss  # noqa: E402,F401  (CGPS)
