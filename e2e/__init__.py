"""End-to-end model profiles tied back to the kernels. The model registry: ``ssmscope.e2e.models``."""
