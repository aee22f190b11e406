"""``python -m rankwise ...`` (also what ``torchrun``/``accelerate launch -m rankwise`` run)."""

from rankwise.cli import run

if __name__ == "__main__":
    run()
