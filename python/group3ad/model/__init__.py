"""Group3AD model: Point-MAE group encoder, checkpoints, self-supervised pretraining, fake
anomalies, k-means with the elbow rule, IUN/IAN losses and training (paper Sec. 3.2.1-3.2.2,
Algorithm 1 phases 1-2), and feature-distribution metrics."""

from .checkpoint import LoadReport, load_encoder, load_pointmae_checkpoint, save_checkpoint
from .config import Group3ADTrainConfig, PretrainConfig
from .encoder import FEATURE_BLOCKS, PointMAEEncoder
from .fake_anomaly import FakeAnomaly, anomaly_center, fpfh_entropy, make_fake_anomaly
from .features import extract_group_features
from .grouping import make_groups
from .kmeans import KMeansResult, elbow_k, kmeans, kmeans_elbow
from .losses import cluster_centers, ian_loss, iun_loss
from .metrics import feature_distribution
from .pretrain import MAEPretrainer, chamfer_l2, pretrain_encoder
from .train import phase_loss, train_group3ad

__all__ = [
    "FEATURE_BLOCKS", "FakeAnomaly", "Group3ADTrainConfig", "KMeansResult", "LoadReport", "MAEPretrainer",
    "PointMAEEncoder", "PretrainConfig", "anomaly_center", "chamfer_l2", "cluster_centers", "elbow_k",
    "extract_group_features", "feature_distribution", "fpfh_entropy", "ian_loss", "iun_loss", "kmeans",
    "kmeans_elbow", "load_encoder", "load_pointmae_checkpoint", "make_fake_anomaly", "make_groups",
    "phase_loss", "pretrain_encoder", "save_checkpoint", "train_group3ad",
]
