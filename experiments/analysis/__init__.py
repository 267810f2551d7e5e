"""Task "analysis": inside trained networks: weight norms, input angles, duty cycles, and how
each layer's winners change under noise (configs/mnist_analysis.yaml)."""
