import diffusers

from services.core.models import schedulers


def test_names_map_to_diffusers_classes_and_back():
    base = diffusers.PNDMScheduler(beta_schedule="scaled_linear", skip_prk_steps=True).config
    for name in schedulers.names():
        built = schedulers.build(name, base)
        assert schedulers.name_of(built) == name
    assert schedulers.label_of("euler_a") == "Euler a"
    assert schedulers.label_of("dpmpp_2m_karras") == "DPM++ 2M Karras"


def test_every_scheduler_follows_the_model_s_prediction_type_and_spacing():
    # SD 2.x models predict v; SDXL spaces its timesteps "leading": a sampler picked by name keeps both.
    base = diffusers.DDIMScheduler(beta_schedule="scaled_linear", prediction_type="v_prediction", steps_offset=1,
                                   timestep_spacing="leading")
    for name in ["", *schedulers.names()]:
        fresh = schedulers.fresh(name, base)
        assert fresh is not base
        assert fresh.config.prediction_type == "v_prediction", name
        assert fresh.config.timestep_spacing == "leading", name
        assert fresh.config.steps_offset == 1, name
