"""Backend work-arounds, mostly for XLA:CPU, that models reach through flax's hooks
(`nn.Conv(conv_general_dilated=...)`, a drop-in BatchNorm), so model files show architecture
only. On accelerators the CPU-only ones give way to the plain `lax` ops.
"""
