"""Derivation: the softmax family differentiated from its definitions, for a fixed K and a
symbolic K, the closed and stable forms the kernels compute proved equal to it, and the Bundle
that carries it all to the later stages."""
