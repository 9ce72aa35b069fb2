"""wae-tf: Wasserstein Auto-Encoders (Tolstikhin et al., ICLR 2018) in Keras 3."""

__version__ = "0.1.0"
