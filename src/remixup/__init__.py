"""remixup: Remix (Rebalanced Mixup) and the long-tail methods around it, for PyTorch."""

__version__ = "0.1.0"
