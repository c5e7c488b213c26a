"""A faithful, scalable Moodle REST web-service emulator over real HTTP, with fault injection.

See ``moodle_emulator/README.md``. Public API::

    from moodle_emulator import EmulatorServer, build_dataset, Dataset
"""

from .dataset import Dataset
from .generator import SCALES, build_dataset
from .realsite import real_dataset
from .server import EmulatorServer

__all__ = ["EmulatorServer", "Dataset", "build_dataset", "real_dataset", "SCALES"]
