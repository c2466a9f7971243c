"""What every Songsmith stage service shares: tensor codec, errors, server bootstrap, telemetry."""
