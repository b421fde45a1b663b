# UperNet with an HpxFormer-S18 backbone on ADE20k, 512x512 crops, 160k iterations (paper Section 4.3, Table 5).
# The hyperparameters are those of the official config (MMSegmentation 1.x): AdamW lr 1e-4, weight decay 0.05,
# layer-wise lr decay 0.7 over 6 layers, linear warm-up over 1500 iterations then poly decay (power 1) to 0,
# stochastic depth 0.4, batch 16 = 4 GPUs x 4 images, mixed precision with dynamic loss scaling.
# Self-contained (no _base_ files): every setting is in this file.
# Run:  mim train mmsegmentation THIS_FILE --launcher pytorch --gpus 4   (or tools/dist_train.sh THIS_FILE 4)
# Weights: pretrained=True downloads the official hpx_former_s18 ImageNet weights (Spravil/hpx_former_s18.westai_in1k);
# offline, set checkpoint="/path/to/pytorch_model.bin" and pretrained=False.

custom_imports = dict(imports=["hyenapixel.dense.mm.plugin"], allow_failed_imports=False)
default_scope = "mmseg"

crop_size = (512, 512)
num_classes = 150
norm_cfg = dict(type="SyncBN", requires_grad=True)
model = dict(
    type="EncoderDecoder",
    data_preprocessor=dict(
        type="SegDataPreProcessor",
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size=crop_size,
    ),
    pretrained=None,
    backbone=dict(
        type="HyenaPixelBackbone",
        model_name="hpx_former_s18",
        checkpoint=None,
        pretrained=True,
        kernel_policy="paper",
        out_indices=(0, 1, 2, 3),
        out_norm="layernorm",
        drop_path_rate=0.4,
    ),
    decode_head=dict(
        type="UPerHead",
        in_channels=[64, 128, 320, 512],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
    ),
    auxiliary_head=dict(
        type="FCNHead",
        in_channels=320,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode="whole"),
)

# ---- data: ADEChallengeData2016 ----
dataset_type = "ADE20KDataset"
data_root = "data/ade/ADEChallengeData2016"
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", reduce_zero_label=True),
    dict(type="RandomResize", scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(2048, 512), keep_ratio=True),
    dict(type="LoadAnnotations", reduce_zero_label=True),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path="images/training", seg_map_path="annotations/training"),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path="images/validation", seg_map_path="annotations/validation"),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])
test_evaluator = val_evaluator

# ---- schedule: 160k iterations ----
train_cfg = dict(type="IterBasedTrainLoop", max_iters=160000, val_interval=16000)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(
    type="AmpOptimWrapper",
    constructor="HyenaPixelLayerDecayOptimizerConstructor",
    paramwise_cfg=dict(decay_rate=0.7, decay_type="layer_wise", num_layers=6),
    optimizer=dict(type="AdamW", lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    loss_scale="dynamic",
)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type="PolyLR", power=1.0, begin=1500, end=160000, eta_min=0.0, by_epoch=False),
]

# ---- runtime ----
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=16000),
    sampler_seed=dict(type="DistSamplerSeedHook"),
    visualization=dict(type="SegVisualizationHook"),
)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)
vis_backends = [dict(type="LocalVisBackend")]
visualizer = dict(type="SegLocalVisualizer", vis_backends=vis_backends, name="visualizer")
log_processor = dict(by_epoch=False)
log_level = "INFO"
load_from = None
resume = False
tta_model = dict(type="SegTTAModel")
