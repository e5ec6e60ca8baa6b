import diffusers

from services.core.models import schedulers


def test_names_map_to_diffusers_classes_and_back():
    base = diffusers.PNDMScheduler(beta_schedule="scaled_linear", skip_prk_steps=True).config
    for name in schedulers.names():
        built = schedulers.build(name, base)
        assert schedulers.name_of(built) == name
    assert schedulers.label_of("euler_a") == "Euler a"
    assert schedulers.label_of("dpmpp_2m_karras") == "DPM++ 2M Karras"
