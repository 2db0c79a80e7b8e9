"""Read a running rig from another program: latest frames (zero copy), a moment across cameras, recent audio.

Start a rig first (`bash scripts/run.sh`, or `mimir-supervisor start`), then:

    .venv/bin/python examples/consumer.py [RIG]
"""

import sys

import numpy as np

from mimir.consumer import RigConsumer, StaleHandle


def main(rig: str = "default") -> int:
    with RigConsumer.attach(rig) as consumer:
        cameras = consumer.cameras()
        print(f"rig {rig}: cameras {', '.join(cameras)}")
        for camera in cameras:
            frame = consumer.latest_frame(camera)
            d = frame.descriptor
            brightness = float(frame.pixels.mean())  # reads shared memory in place, no copy
            ok = frame.still_valid()                 # the slot was not reused while we read it
            print(f"  {camera}: frame {d.sequence} {d.width}x{d.height} at canonical {frame.canonical_ns / 1e9:.6f} s, "
                  f"mean {brightness:.1f}, {'valid' if ok else 'overwritten while reading: dropped'}")
        edge_ns = consumer.view.edge_ns
        t = edge_ns - 150_000_000  # 150 ms ago: one frame per camera nearest it, and 50 ms of audio around it
        moment = consumer.moment(t, audio_ms=50)
        skews = ", ".join(f"{c} {f.skew_ns / 1e6:+.1f} ms" for c, f in moment.frames.items())
        print(f"  moment at {t / 1e9:.6f} s: frames {skews}; "
              + ", ".join(f"{s} {a.samples.shape[0]} frames" for s, a in moment.audio.items())
              + ("; missing " + ", ".join(moment.missing) if moment.missing else ""))
        try:
            span = consumer.audio(edge_ns - 200_000_000, edge_ns - 100_000_000)
        except StaleHandle as exc:
            print(f"  audio: {exc}")
            return 1
        rms = np.sqrt((span.samples.astype(np.float64) ** 2).mean(axis=0))
        print(f"  audio: {span.samples.shape[0]} frames x {span.samples.shape[1]} channels at {span.rate_hz:.0f} Hz "
              f"from canonical {span.start_ns / 1e9:.6f} s; rms per channel {np.round(rms, 4).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
