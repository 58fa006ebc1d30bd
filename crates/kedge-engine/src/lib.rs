//! Plans, applies, prunes and assesses the health of a desired object set against a live cluster.
