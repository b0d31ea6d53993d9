"""Data sets comptk can build as local competitions (`comptk prepare`): data sources (sources.py: Fashion-MNIST, fashion-lt, digits), the five
reference contests' generated stand-ins (standins/), and ``prepare`` (build.py), which writes one
under WORKDIR/data/NAME. The data layer (comptk.data) reads what these write and knows nothing
of them."""

from .build import preparable, prepare

__all__ = ["preparable", "prepare"]
