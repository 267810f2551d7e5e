"""Sparse layers and the paper's networks. Knows nothing about datasets, files or YAML."""

from models.conv import Conv2d
from models.dropconnect import DropConnect
from models.inference import sparse_inference
from models.kwinners import KWinners, KWinners2d, k_winners, surrogate_gradients
from models.network import (ConvLayerConfig, HiddenLayerConfig, NetworkConfig, boost_strength,
                            build_network, check_network_config, conv_output_sizes,
                            count_parameters, network_config, rezero_weights,
                            update_boost_strength)
from models.pooling import MaxPool2x2
from models.pretrained import load_pretrained, pretrained_info
from models.sparse_weights import SparseWeights

__all__ = ["KWinners", "KWinners2d", "k_winners", "SparseWeights", "DropConnect", "MaxPool2x2",
           "Conv2d", "NetworkConfig", "ConvLayerConfig", "HiddenLayerConfig", "build_network",
           "check_network_config", "network_config", "conv_output_sizes", "count_parameters",
           "rezero_weights", "update_boost_strength", "boost_strength", "load_pretrained",
           "pretrained_info", "surrogate_gradients", "sparse_inference"]
