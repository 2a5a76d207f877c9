"""DensePose CSE (continuous surface embeddings) person detector in plain PyTorch.

No detectron2/DensePose dependency: the model is rebuilt with detectron2's module names so
the official model-zoo checkpoint loads directly, and its outputs match detectron2's
(checked layer by layer against golden data from detectron2 itself).
"""
from .config import CSEConfig, config_from_detectron2_yaml
from .detector import CSE_WEIGHTS, SMPL_VERTEX_FEATURES, CSEDetector, postprocess_cse
from .model import CSEModel, CSEModelOutput, build_cse_model, load_cse_weights, preprocess_image, \
    resize_shortest_edge_shape
from .pkl import UnsafePickleError, load_detectron2_pkl, load_pickle_restricted, load_vertex_features
from .structures import CSEDetections

__all__ = ["CSEConfig", "CSEDetections", "CSEDetector", "CSEModel", "CSEModelOutput", "CSE_WEIGHTS",
           "SMPL_VERTEX_FEATURES",
           "UnsafePickleError", "build_cse_model", "config_from_detectron2_yaml",
           "load_cse_weights", "load_detectron2_pkl", "load_pickle_restricted",
           "load_vertex_features", "postprocess_cse", "preprocess_image", "resize_shortest_edge_shape"]
