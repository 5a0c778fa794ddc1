# Hand-written support module (not generated from a notebook).
"""Deprecated: the published weights moved to :mod:`attention_lib.weights`.

This module re-exports :mod:`attention_lib.weights` for one release and warns on import;
write ``from attention_lib.weights import pretrained_model`` (or
``from attention_lib import pretrained_model``) instead.
"""

import warnings

from attention_lib.weights import *  # noqa: F401,F403 - the old names, for one release
from attention_lib.weights import __all__  # noqa: F401

warnings.warn("attention_lib.pretrained is deprecated and will be removed in the next release; "
              "use attention_lib.weights", DeprecationWarning, stacklevel=2)
