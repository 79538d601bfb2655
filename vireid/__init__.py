"""vireid: a high-throughput rewrite of the AGW visible-infrared re-identification pipeline."""

__version__ = "0.1.0"
