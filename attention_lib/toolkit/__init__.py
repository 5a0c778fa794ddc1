# Hand-written support module (not generated from a notebook).
"""The chapter toolkit: what every chapter calls instead of copying.

A chapter keeps only its own maths, code, figures and prose; the sections that every
chapter has are one call each:

* :func:`check_parameters`: the chapter's papermill parameters, all checked first;
* :func:`cost_table`: parameters, FLOPs (and time, on the reader's machine) per module;
* :func:`load_digits`, :func:`digits_network`, :func:`digits_experiment`: the small
  real-data experiment, trained in seconds on a CPU; :func:`box_contrast_table` and
  :func:`plot_digit_maps` read spatial attention on digits pasted on a blank canvas;
* :func:`trained_attention` / :func:`no_published_weights`: the trained-attention section;
* :func:`mini_imagenet_section`: the "Train it on a mini-ImageNet" section;
* :func:`table`, :func:`callout` and :func:`slider`: tables as HTML tables, messages as
  boxes, and interactive figures that respond in the static page.
"""

from attention_lib.toolkit.costs import RESNET50_STAGES, cost_frame, cost_table
from attention_lib.toolkit.digits import (HELD_OUT, Digits, DigitsResult, DigitsRun, ResidualBlock, box_contrast,
                                          box_contrast_table, digits_experiment, digits_network, load_digits, paste,
                                          plot_digit_maps)
from attention_lib.toolkit.display import Callout, Slider, Table, callout, figure_png, slider, table
from attention_lib.toolkit.parameters import (ParameterError, boolean, check_parameters, list_of, natural, number,
                                              odd_int, one_of, positive_int, run_options, text)
from attention_lib.toolkit.sections import (IMAGENETTE_TRAIN_IMAGES, TrainedAttention, imagenette_report,
                                            mini_imagenet_section, no_published_weights, recorded_run, should_train,
                                            show_attention, top5_markdown, top5_table, trained_attention)

__all__ = [
    "check_parameters", "run_options", "ParameterError", "boolean", "natural", "positive_int", "odd_int", "number",
    "one_of", "list_of", "text",
    "RESNET50_STAGES", "cost_frame", "cost_table",
    "HELD_OUT", "Digits", "load_digits", "paste", "ResidualBlock", "digits_network", "DigitsRun", "DigitsResult",
    "digits_experiment", "box_contrast", "box_contrast_table", "plot_digit_maps",
    "TrainedAttention", "trained_attention", "no_published_weights", "show_attention", "top5_table",
    "top5_markdown", "imagenette_report", "should_train", "recorded_run", "mini_imagenet_section",
    "IMAGENETTE_TRAIN_IMAGES", "Callout", "callout", "Table", "table", "Slider", "slider", "figure_png",
]
