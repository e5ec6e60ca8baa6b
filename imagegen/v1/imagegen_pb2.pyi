from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_JPEG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_WEBP: _ClassVar[ImageFormat]

class FitMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FIT_MODE_UNSPECIFIED: _ClassVar[FitMode]
    FIT_MODE_RESIZE: _ClassVar[FitMode]
    FIT_MODE_CROP: _ClassVar[FitMode]
    FIT_MODE_KEEP: _ClassVar[FitMode]
    FIT_MODE_FILL: _ClassVar[FitMode]
    FIT_MODE_LATENT: _ClassVar[FitMode]

class MaskedContent(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MASKED_CONTENT_UNSPECIFIED: _ClassVar[MaskedContent]
    MASKED_CONTENT_ORIGINAL: _ClassVar[MaskedContent]
    MASKED_CONTENT_FILL: _ClassVar[MaskedContent]
    MASKED_CONTENT_LATENT_NOISE: _ClassVar[MaskedContent]
    MASKED_CONTENT_LATENT_NOTHING: _ClassVar[MaskedContent]

class ControlMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTROL_MODE_UNSPECIFIED: _ClassVar[ControlMode]
    CONTROL_MODE_BALANCED: _ClassVar[ControlMode]
    CONTROL_MODE_PROMPT: _ClassVar[ControlMode]
    CONTROL_MODE_CONTROLNET: _ClassVar[ControlMode]

class OutpaintFill(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPAINT_FILL_UNSPECIFIED: _ClassVar[OutpaintFill]
    OUTPAINT_FILL_EDGE: _ClassVar[OutpaintFill]
    OUTPAINT_FILL_NOISE: _ClassVar[OutpaintFill]
    OUTPAINT_FILL_MEAN: _ClassVar[OutpaintFill]
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
IMAGE_FORMAT_JPEG: ImageFormat
IMAGE_FORMAT_WEBP: ImageFormat
FIT_MODE_UNSPECIFIED: FitMode
FIT_MODE_RESIZE: FitMode
FIT_MODE_CROP: FitMode
FIT_MODE_KEEP: FitMode
FIT_MODE_FILL: FitMode
FIT_MODE_LATENT: FitMode
MASKED_CONTENT_UNSPECIFIED: MaskedContent
MASKED_CONTENT_ORIGINAL: MaskedContent
MASKED_CONTENT_FILL: MaskedContent
MASKED_CONTENT_LATENT_NOISE: MaskedContent
MASKED_CONTENT_LATENT_NOTHING: MaskedContent
CONTROL_MODE_UNSPECIFIED: ControlMode
CONTROL_MODE_BALANCED: ControlMode
CONTROL_MODE_PROMPT: ControlMode
CONTROL_MODE_CONTROLNET: ControlMode
OUTPAINT_FILL_UNSPECIFIED: OutpaintFill
OUTPAINT_FILL_EDGE: OutpaintFill
OUTPAINT_FILL_NOISE: OutpaintFill
OUTPAINT_FILL_MEAN: OutpaintFill

class GenerationParams(_message.Message):
    __slots__ = ("prompt", "negative_prompt", "num_inference_steps", "guidance_scale", "width", "height", "seed", "num_images", "scheduler", "output_format", "quality", "preview_every", "loras", "clip_skip", "model", "schedule_type", "control")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    NUM_INFERENCE_STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    NUM_IMAGES_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_EVERY_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    CLIP_SKIP_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    negative_prompt: str
    num_inference_steps: int
    guidance_scale: float
    width: int
    height: int
    seed: int
    num_images: int
    scheduler: str
    output_format: ImageFormat
    quality: int
    preview_every: int
    loras: _containers.RepeatedCompositeFieldContainer[LoraWeight]
    clip_skip: int
    model: str
    schedule_type: str
    control: _containers.RepeatedCompositeFieldContainer[ControlUnit]
    def __init__(self, prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., num_inference_steps: _Optional[int] = ..., guidance_scale: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., seed: _Optional[int] = ..., num_images: _Optional[int] = ..., scheduler: _Optional[str] = ..., output_format: _Optional[_Union[ImageFormat, str]] = ..., quality: _Optional[int] = ..., preview_every: _Optional[int] = ..., loras: _Optional[_Iterable[_Union[LoraWeight, _Mapping]]] = ..., clip_skip: _Optional[int] = ..., model: _Optional[str] = ..., schedule_type: _Optional[str] = ..., control: _Optional[_Iterable[_Union[ControlUnit, _Mapping]]] = ...) -> None: ...

class ControlUnit(_message.Message):
    __slots__ = ("model", "image", "preprocessor", "processor_res", "threshold_a", "threshold_b", "weight", "guidance_start", "guidance_end", "control_mode", "resize_mode", "pixel_perfect")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSOR_FIELD_NUMBER: _ClassVar[int]
    PROCESSOR_RES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_A_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_B_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_START_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_END_FIELD_NUMBER: _ClassVar[int]
    CONTROL_MODE_FIELD_NUMBER: _ClassVar[int]
    RESIZE_MODE_FIELD_NUMBER: _ClassVar[int]
    PIXEL_PERFECT_FIELD_NUMBER: _ClassVar[int]
    model: str
    image: Image
    preprocessor: str
    processor_res: int
    threshold_a: float
    threshold_b: float
    weight: float
    guidance_start: float
    guidance_end: float
    control_mode: ControlMode
    resize_mode: FitMode
    pixel_perfect: bool
    def __init__(self, model: _Optional[str] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., preprocessor: _Optional[str] = ..., processor_res: _Optional[int] = ..., threshold_a: _Optional[float] = ..., threshold_b: _Optional[float] = ..., weight: _Optional[float] = ..., guidance_start: _Optional[float] = ..., guidance_end: _Optional[float] = ..., control_mode: _Optional[_Union[ControlMode, str]] = ..., resize_mode: _Optional[_Union[FitMode, str]] = ..., pixel_perfect: _Optional[bool] = ...) -> None: ...

class PreprocessRequest(_message.Message):
    __slots__ = ("unit", "width", "height", "seed")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    unit: ControlUnit
    width: int
    height: int
    seed: int
    def __init__(self, unit: _Optional[_Union[ControlUnit, _Mapping]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class PreprocessResponse(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: Image
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class LoraWeight(_message.Message):
    __slots__ = ("name", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: float
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("data", "mime_type")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    mime_type: str
    def __init__(self, data: _Optional[bytes] = ..., mime_type: _Optional[str] = ...) -> None: ...

class Txt2ImgRequest(_message.Message):
    __slots__ = ("params", "hires")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    HIRES_FIELD_NUMBER: _ClassVar[int]
    params: GenerationParams
    hires: HiresFix
    def __init__(self, params: _Optional[_Union[GenerationParams, _Mapping]] = ..., hires: _Optional[_Union[HiresFix, _Mapping]] = ...) -> None: ...

class HiresFix(_message.Message):
    __slots__ = ("scale", "resize_width", "resize_height", "upscaler", "steps", "denoising_strength", "scheduler", "schedule_type", "prompt", "negative_prompt")
    SCALE_FIELD_NUMBER: _ClassVar[int]
    RESIZE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    RESIZE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    UPSCALER_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    DENOISING_STRENGTH_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    scale: float
    resize_width: int
    resize_height: int
    upscaler: str
    steps: int
    denoising_strength: float
    scheduler: str
    schedule_type: str
    prompt: str
    negative_prompt: str
    def __init__(self, scale: _Optional[float] = ..., resize_width: _Optional[int] = ..., resize_height: _Optional[int] = ..., upscaler: _Optional[str] = ..., steps: _Optional[int] = ..., denoising_strength: _Optional[float] = ..., scheduler: _Optional[str] = ..., schedule_type: _Optional[str] = ..., prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ...) -> None: ...

class Img2ImgRequest(_message.Message):
    __slots__ = ("params", "init_image", "strength", "fit")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    INIT_IMAGE_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    FIT_FIELD_NUMBER: _ClassVar[int]
    params: GenerationParams
    init_image: Image
    strength: float
    fit: FitMode
    def __init__(self, params: _Optional[_Union[GenerationParams, _Mapping]] = ..., init_image: _Optional[_Union[Image, _Mapping]] = ..., strength: _Optional[float] = ..., fit: _Optional[_Union[FitMode, str]] = ...) -> None: ...

class InpaintRequest(_message.Message):
    __slots__ = ("params", "init_image", "mask_image", "strength", "mask_blur", "invert_mask", "fit", "only_masked", "only_masked_padding", "masked_content", "outpaint")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    INIT_IMAGE_FIELD_NUMBER: _ClassVar[int]
    MASK_IMAGE_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    MASK_BLUR_FIELD_NUMBER: _ClassVar[int]
    INVERT_MASK_FIELD_NUMBER: _ClassVar[int]
    FIT_FIELD_NUMBER: _ClassVar[int]
    ONLY_MASKED_FIELD_NUMBER: _ClassVar[int]
    ONLY_MASKED_PADDING_FIELD_NUMBER: _ClassVar[int]
    MASKED_CONTENT_FIELD_NUMBER: _ClassVar[int]
    OUTPAINT_FIELD_NUMBER: _ClassVar[int]
    params: GenerationParams
    init_image: Image
    mask_image: Image
    strength: float
    mask_blur: int
    invert_mask: bool
    fit: FitMode
    only_masked: bool
    only_masked_padding: int
    masked_content: MaskedContent
    outpaint: Outpaint
    def __init__(self, params: _Optional[_Union[GenerationParams, _Mapping]] = ..., init_image: _Optional[_Union[Image, _Mapping]] = ..., mask_image: _Optional[_Union[Image, _Mapping]] = ..., strength: _Optional[float] = ..., mask_blur: _Optional[int] = ..., invert_mask: _Optional[bool] = ..., fit: _Optional[_Union[FitMode, str]] = ..., only_masked: _Optional[bool] = ..., only_masked_padding: _Optional[int] = ..., masked_content: _Optional[_Union[MaskedContent, str]] = ..., outpaint: _Optional[_Union[Outpaint, _Mapping]] = ...) -> None: ...

class Outpaint(_message.Message):
    __slots__ = ("left", "right", "up", "down", "fill")
    LEFT_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    DOWN_FIELD_NUMBER: _ClassVar[int]
    FILL_FIELD_NUMBER: _ClassVar[int]
    left: int
    right: int
    up: int
    down: int
    fill: OutpaintFill
    def __init__(self, left: _Optional[int] = ..., right: _Optional[int] = ..., up: _Optional[int] = ..., down: _Optional[int] = ..., fill: _Optional[_Union[OutpaintFill, str]] = ...) -> None: ...

class GeneratedImage(_message.Message):
    __slots__ = ("data", "mime_type", "width", "height", "seed", "infotext")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    INFOTEXT_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    mime_type: str
    width: int
    height: int
    seed: int
    infotext: str
    def __init__(self, data: _Optional[bytes] = ..., mime_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., seed: _Optional[int] = ..., infotext: _Optional[str] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("queue_ms", "inference_ms", "encode_ms", "total_ms")
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    queue_ms: float
    inference_ms: float
    encode_ms: float
    total_ms: float
    def __init__(self, queue_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., encode_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("images", "timings")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[GeneratedImage]
    timings: Timings
    def __init__(self, images: _Optional[_Iterable[_Union[GeneratedImage, _Mapping]]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ...) -> None: ...

class QueuedEvent(_message.Message):
    __slots__ = ("position",)
    POSITION_FIELD_NUMBER: _ClassVar[int]
    position: int
    def __init__(self, position: _Optional[int] = ...) -> None: ...

class ProgressEvent(_message.Message):
    __slots__ = ("step", "total_steps", "preview")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    preview: Image
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., preview: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class GenerateEvent(_message.Message):
    __slots__ = ("queued", "progress", "result")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    queued: QueuedEvent
    progress: ProgressEvent
    result: GenerateResponse
    def __init__(self, queued: _Optional[_Union[QueuedEvent, _Mapping]] = ..., progress: _Optional[_Union[ProgressEvent, _Mapping]] = ..., result: _Optional[_Union[GenerateResponse, _Mapping]] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ("rescan_models",)
    RESCAN_MODELS_FIELD_NUMBER: _ClassVar[int]
    rescan_models: bool
    def __init__(self, rescan_models: _Optional[bool] = ...) -> None: ...

class Defaults(_message.Message):
    __slots__ = ("num_inference_steps", "guidance_scale", "width", "height", "scheduler", "strength", "mask_blur", "quality", "only_masked_padding")
    NUM_INFERENCE_STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    MASK_BLUR_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    ONLY_MASKED_PADDING_FIELD_NUMBER: _ClassVar[int]
    num_inference_steps: int
    guidance_scale: float
    width: int
    height: int
    scheduler: str
    strength: float
    mask_blur: int
    quality: int
    only_masked_padding: int
    def __init__(self, num_inference_steps: _Optional[int] = ..., guidance_scale: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., scheduler: _Optional[str] = ..., strength: _Optional[float] = ..., mask_blur: _Optional[int] = ..., quality: _Optional[int] = ..., only_masked_padding: _Optional[int] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_width", "max_height", "max_pixels", "max_steps", "max_images", "max_prompt_chars", "max_guidance_scale", "max_input_pixels", "max_message_bytes", "max_queue", "max_batch_images", "max_control_units")
    MAX_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MAX_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_PROMPT_CHARS_FIELD_NUMBER: _ClassVar[int]
    MAX_GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_IMAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTROL_UNITS_FIELD_NUMBER: _ClassVar[int]
    max_width: int
    max_height: int
    max_pixels: int
    max_steps: int
    max_images: int
    max_prompt_chars: int
    max_guidance_scale: float
    max_input_pixels: int
    max_message_bytes: int
    max_queue: int
    max_batch_images: int
    max_control_units: int
    def __init__(self, max_width: _Optional[int] = ..., max_height: _Optional[int] = ..., max_pixels: _Optional[int] = ..., max_steps: _Optional[int] = ..., max_images: _Optional[int] = ..., max_prompt_chars: _Optional[int] = ..., max_guidance_scale: _Optional[float] = ..., max_input_pixels: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_queue: _Optional[int] = ..., max_batch_images: _Optional[int] = ..., max_control_units: _Optional[int] = ...) -> None: ...

class ServiceInfo(_message.Message):
    __slots__ = ("mode", "model", "device", "dtype", "schedulers", "defaults", "limits", "output_formats", "version", "engine", "model_family", "inpaint_model", "loras", "max_clip_skip", "models", "embeddings", "samplers", "controlnets", "preprocessors", "upscalers")
    MODE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULERS_FIELD_NUMBER: _ClassVar[int]
    DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMATS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FAMILY_FIELD_NUMBER: _ClassVar[int]
    INPAINT_MODEL_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    MAX_CLIP_SKIP_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    SAMPLERS_FIELD_NUMBER: _ClassVar[int]
    CONTROLNETS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSORS_FIELD_NUMBER: _ClassVar[int]
    UPSCALERS_FIELD_NUMBER: _ClassVar[int]
    mode: str
    model: str
    device: str
    dtype: str
    schedulers: _containers.RepeatedScalarFieldContainer[str]
    defaults: Defaults
    limits: Limits
    output_formats: _containers.RepeatedScalarFieldContainer[ImageFormat]
    version: str
    engine: str
    model_family: str
    inpaint_model: bool
    loras: _containers.RepeatedScalarFieldContainer[str]
    max_clip_skip: int
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    embeddings: _containers.RepeatedCompositeFieldContainer[EmbeddingInfo]
    samplers: _containers.RepeatedCompositeFieldContainer[SamplerInfo]
    controlnets: _containers.RepeatedCompositeFieldContainer[ControlNetInfo]
    preprocessors: _containers.RepeatedCompositeFieldContainer[PreprocessorInfo]
    upscalers: _containers.RepeatedCompositeFieldContainer[UpscalerInfo]
    def __init__(self, mode: _Optional[str] = ..., model: _Optional[str] = ..., device: _Optional[str] = ..., dtype: _Optional[str] = ..., schedulers: _Optional[_Iterable[str]] = ..., defaults: _Optional[_Union[Defaults, _Mapping]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., output_formats: _Optional[_Iterable[_Union[ImageFormat, str]]] = ..., version: _Optional[str] = ..., engine: _Optional[str] = ..., model_family: _Optional[str] = ..., inpaint_model: _Optional[bool] = ..., loras: _Optional[_Iterable[str]] = ..., max_clip_skip: _Optional[int] = ..., models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., embeddings: _Optional[_Iterable[_Union[EmbeddingInfo, _Mapping]]] = ..., samplers: _Optional[_Iterable[_Union[SamplerInfo, _Mapping]]] = ..., controlnets: _Optional[_Iterable[_Union[ControlNetInfo, _Mapping]]] = ..., preprocessors: _Optional[_Iterable[_Union[PreprocessorInfo, _Mapping]]] = ..., upscalers: _Optional[_Iterable[_Union[UpscalerInfo, _Mapping]]] = ...) -> None: ...

class UpscalerInfo(_message.Message):
    __slots__ = ("name", "scale", "architecture", "file", "unusable")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    UNUSABLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    scale: int
    architecture: str
    file: str
    unusable: str
    def __init__(self, name: _Optional[str] = ..., scale: _Optional[int] = ..., architecture: _Optional[str] = ..., file: _Optional[str] = ..., unusable: _Optional[str] = ...) -> None: ...

class UpscaleRequest(_message.Message):
    __slots__ = ("image", "upscaler", "scale", "width", "height", "crop", "output_format", "quality", "upscaler_2", "upscaler_2_visibility")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    UPSCALER_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    UPSCALER_2_FIELD_NUMBER: _ClassVar[int]
    UPSCALER_2_VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    image: Image
    upscaler: str
    scale: float
    width: int
    height: int
    crop: bool
    output_format: ImageFormat
    quality: int
    upscaler_2: str
    upscaler_2_visibility: float
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., upscaler: _Optional[str] = ..., scale: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., crop: _Optional[bool] = ..., output_format: _Optional[_Union[ImageFormat, str]] = ..., quality: _Optional[int] = ..., upscaler_2: _Optional[str] = ..., upscaler_2_visibility: _Optional[float] = ...) -> None: ...

class UpscaleResponse(_message.Message):
    __slots__ = ("image", "timings")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    image: GeneratedImage
    timings: Timings
    def __init__(self, image: _Optional[_Union[GeneratedImage, _Mapping]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ...) -> None: ...

class ControlNetInfo(_message.Message):
    __slots__ = ("name", "family", "hash", "loaded")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    name: str
    family: str
    hash: str
    loaded: bool
    def __init__(self, name: _Optional[str] = ..., family: _Optional[str] = ..., hash: _Optional[str] = ..., loaded: _Optional[bool] = ...) -> None: ...

class PreprocessorInfo(_message.Message):
    __slots__ = ("name", "params", "label")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    params: _containers.RepeatedCompositeFieldContainer[PreprocessorParam]
    label: str
    def __init__(self, name: _Optional[str] = ..., params: _Optional[_Iterable[_Union[PreprocessorParam, _Mapping]]] = ..., label: _Optional[str] = ...) -> None: ...

class PreprocessorParam(_message.Message):
    __slots__ = ("field", "label", "default_value", "min", "max", "step")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    field: str
    label: str
    default_value: float
    min: float
    max: float
    step: float
    def __init__(self, field: _Optional[str] = ..., label: _Optional[str] = ..., default_value: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., step: _Optional[float] = ...) -> None: ...

class EmbeddingInfo(_message.Message):
    __slots__ = ("name", "vectors", "shape", "family", "loaded", "hash", "step", "sd_checkpoint", "sd_checkpoint_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    SD_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    SD_CHECKPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    vectors: int
    shape: int
    family: str
    loaded: bool
    hash: str
    step: int
    sd_checkpoint: str
    sd_checkpoint_name: str
    def __init__(self, name: _Optional[str] = ..., vectors: _Optional[int] = ..., shape: _Optional[int] = ..., family: _Optional[str] = ..., loaded: _Optional[bool] = ..., hash: _Optional[str] = ..., step: _Optional[int] = ..., sd_checkpoint: _Optional[str] = ..., sd_checkpoint_name: _Optional[str] = ...) -> None: ...

class SamplerInfo(_message.Message):
    __slots__ = ("name", "label", "schedule_types", "automatic")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_TYPES_FIELD_NUMBER: _ClassVar[int]
    AUTOMATIC_FIELD_NUMBER: _ClassVar[int]
    name: str
    label: str
    schedule_types: _containers.RepeatedScalarFieldContainer[str]
    automatic: str
    def __init__(self, name: _Optional[str] = ..., label: _Optional[str] = ..., schedule_types: _Optional[_Iterable[str]] = ..., automatic: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "family", "inpaint", "hash", "loaded", "is_default", "unusable")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    INPAINT_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    UNUSABLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    family: str
    inpaint: bool
    hash: str
    loaded: bool
    is_default: bool
    unusable: str
    def __init__(self, name: _Optional[str] = ..., family: _Optional[str] = ..., inpaint: _Optional[bool] = ..., hash: _Optional[str] = ..., loaded: _Optional[bool] = ..., is_default: _Optional[bool] = ..., unusable: _Optional[str] = ...) -> None: ...
