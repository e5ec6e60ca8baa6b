from services.common.server import main

if __name__ == "__main__":
    raise SystemExit(main("img2img"))
