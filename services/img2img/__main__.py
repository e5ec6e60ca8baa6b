from services.core.rpc.server import main
from services.img2img.mode import MODE

if __name__ == "__main__":
    raise SystemExit(main(MODE))
