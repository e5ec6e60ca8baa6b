from services.core.rpc.server import main
from services.inpaint.mode import MODE

if __name__ == "__main__":
    raise SystemExit(main(MODE))
