# Hand-written support module (not generated from a notebook).
"""Published ImageNet weights in this library's models.

:func:`pretrained_model` builds the model of :func:`attention_lib.create_model` that
computes the same function as a published ImageNet classifier, downloads the published
weights (through timm or torchvision, only when it is called) and copies them in through
an explicit state-dict mapping. The result is an ordinary ``create_model`` network whose
attention modules are this library's own from-scratch modules, carrying trained weights::

    >>> from attention_lib.weights import pretrained_model
    >>> model = pretrained_model("seresnet50")  # doctest: +SKIP (downloads once, then cached)
    >>> se = model.layer4[2].bn3.attention      # doctest: +SKIP (attention_lib.SE, trained weights)

One module per job:

* :mod:`~attention_lib.weights.registry`: the published names that map (:data:`PRETRAINED`),
  those that do not and why (:data:`NOT_SUPPORTED`), and the preprocessing each expects;
* :mod:`~attention_lib.weights.availability`: for every backbone and attention of
  ``create_model``, which names carry weights, and why the others have none;
* :mod:`~attention_lib.weights.download`: downloads, the cache, failing fast offline;
* :mod:`~attention_lib.weights.backbone`: ResNet-D/T and Caffe backbone variants;
* :mod:`~attention_lib.weights.mapping`: the state-dict renaming, checked key by key;
* :mod:`~attention_lib.weights.load`: :func:`pretrained_model` and the chapters'
  :func:`load_trained`.

``tests/test_weights.py`` proves every mapping offline: it builds each published
architecture with *random* weights, maps them onto ours and requires the same logits.
timm is needed only for timm's names (``pip install timm``).
"""

from attention_lib.weights.availability import AVAILABILITY, availability, availability_markdown, reason
from attention_lib.weights.backbone import adapt_backbone, build_model
from attention_lib.weights.download import (fetch_published_state_dict, host_reachable, output_to_stdout,
                                            published_model)
from attention_lib.weights.load import WEIGHT_MODES, load_trained, pretrained_model
from attention_lib.weights.mapping import WeightMappingError, load_published_state_dict, map_state_dict
from attention_lib.weights.registry import NOT_SUPPORTED, PRETRAINED, Backbone, PretrainedEntry, data_config, parse

__all__ = [
    "Backbone", "PretrainedEntry", "PRETRAINED", "NOT_SUPPORTED", "AVAILABILITY", "WeightMappingError",
    "WEIGHT_MODES", "availability", "availability_markdown", "reason", "pretrained_model", "load_trained",
    "build_model", "adapt_backbone", "published_model", "fetch_published_state_dict", "host_reachable",
    "output_to_stdout", "map_state_dict", "load_published_state_dict", "data_config", "parse",
]
