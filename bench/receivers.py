"""``mimir bench receivers``: what one remote receiver costs the network, and what one listener can ingest.

1. **Bytes and latency** (real processes): a ``mimir receiver`` decodes a
   rendered witness file paced in real time (default report schedule) and sends
   through a :class:`~mimir.net.relay.LoopbackRelay` that counts TCP payload
   bytes each way (everything ZeroMQ sends: CURVE handshake, framing,
   encryption, heartbeats, retransmissions; not IP/TCP headers). The listener
   runs in this process, waiting on its socket with a ``zmq.Poller`` and then
   calling ``poll()``. Latency: anchor decoded (receiver wall clock, after the
   ``feed`` that produced it) to applied in the listener's state (same host, so
   the same clock).
2. **Time transfer** (real processes, 127.0.0.1): a ``mimir receiver`` decodes
   a paced witness file, connected straight to the listener (probes every
   0.1 s); the listener waits on its socket with a ``zmq.Poller``. Figures: the
   echoes' round trip ``d`` (p50/p99; the receiver's hold time excluded, as
   NTP does), the line's uncertainty while ready, and its error against the
   receiver's own canonical-at-host line (same host, same clock). The peer
   measured in the same run: a bare CURVE ``zmq`` ping between this process
   (ROUTER, same poller loop) and a child process (DEALER echoing every frame
   at once); ratios are against its round trip (the uncertainty against half
   of it: NTP's floor for one exchange).
3. **Capacity**: the listener in its own process; a load generator process
   with N CURVE clients (N keys, all trusted) sending valid reports at 10 per
   second each (clock fits, one-anchor batches and health, in turn). The
   listener's CPU (user + system of all its threads, including libzmq's I/O
   thread that decrypts, and the ZAP thread) is measured over a window after
   every client has connected. N grows until the CPU passes 10 % of a core.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import load_average_1min

__all__ = ["format_table", "run_bench"]

GOAL_UPLINK_BYTES_PER_S = 2000.0
CPU_LIMIT_PCT = 10.0
REPORTS_PER_S = 10.0


# ------------------------------------------------------------------------------------------------- part 1
def _bytes_and_latency(seconds: float, progress: Callable[[str], None]) -> list[dict]:
    import soundfile as sf
    import zmq

    from mimir.config import NetworkConfig, RemoteSourceConfig
    from mimir.sync.trials import Condition, make_trial_audio

    from mimir.net.keys import load_public_key, write_keypair
    from mimir.net.listener import RemoteListener
    from mimir.net.relay import LoopbackRelay

    load_at_start = _load_1m()
    with tempfile.TemporaryDirectory(prefix="mimir-bench-net-") as tmp:
        d = Path(tmp)
        write_keypair(d / "server")
        write_keypair(d / "raven")
        audio, _ = make_trial_audio(Condition("bench", "", ppm=80.0, snr_db=10.0, seconds=seconds),
                                    np.random.default_rng(5))
        sf.write(str(d / "w.wav"), audio.astype(np.float32), 48000, subtype="FLOAT")
        cfg = NetworkConfig(listen="tcp://127.0.0.1:*", server_key_file=str(d / "server.key_secret"),
                            sources=[RemoteSourceConfig(source_id="raven", public_key=load_public_key(d / "raven.key"),
                                                        trust="trusted-evidence")])
        with RemoteListener(cfg, "bench-bytes") as listener:
            port = int(listener.endpoint.rsplit(":", 1)[1])
            with LoopbackRelay(("127.0.0.1", port)) as relay:
                progress(f"bytes/latency: one receiver, {seconds:g} s of witness in real time ...")
                argv = [sys.executable, "-m", "mimir.net", "receiver", "--source-id", "raven", "--connect",
                        relay.endpoint, "--file", str(d / "w.wav"), "--key", str(d / "raven.key_secret"),
                        "--server-key", str(d / "server.key"), "--json"]
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                poller = zmq.Poller()
                poller.register(listener.socket, zmq.POLLIN)
                deadline = time.monotonic() + seconds + 30.0
                try:
                    while proc.poll() is None and time.monotonic() < deadline:
                        poller.poll(20)
                        listener.poll(1000)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                    proc.wait(timeout=10)
                assert proc.stdout is not None  # stdout=PIPE
                out = proc.stdout.read()
                proc.stdout.close()
                listener.poll(1000)
                state = listener.table.states["raven"]
                latencies_ms = np.array(state.decode_to_state_ns, dtype=np.float64) / 1e6
                src = listener.source("raven")
                up, down = relay.bytes_up, relay.bytes_down

    summary = json.loads(out) if out.strip() else {}
    audio_s = float(summary.get("audio_seconds") or seconds)
    messages = int(summary.get("messages_total", 0))
    uplink = up / audio_s
    return [
        {"name": "bytes_per_receiver", "audio_s": round(audio_s, 2), "reports_total": messages,
         "reports_per_s": round(messages / audio_s, 2), "messages_by_kind": summary.get("messages_by_kind"),
         "time_echoes_per_s": round(int(summary.get("time_echoes", 0)) / audio_s, 2),
         "uplink_bytes_per_s": round(uplink, 1), "downlink_bytes_per_s": round(down / audio_s, 1),
         "payload_bytes_per_s": round(src.counters.accepted_bytes / audio_s, 1),
         "goal_uplink_bytes_per_s": GOAL_UPLINK_BYTES_PER_S, "goal_met": uplink <= GOAL_UPLINK_BYTES_PER_S,
         "receiver_exit_code": summary.get("exit_code")},
        {"name": "decode_to_listener_latency", "anchors": int(latencies_ms.size),
         "p50_ms": round(float(np.percentile(latencies_ms, 50)), 3) if latencies_ms.size else None,
         "p99_ms": round(float(np.percentile(latencies_ms, 99)), 3) if latencies_ms.size else None,
         "max_ms": round(float(latencies_ms.max()), 3) if latencies_ms.size else None,
         "listener_loop": "zmq.Poller wait on the socket, then poll()",
         "load_average_1m_at_start": load_at_start},
    ]


# ------------------------------------------------------------------------------------------------- part 2
def _ping_worker(endpoint: str, server_public: str, public: str, secret: str, conn) -> None:
    """The bare peer: a CURVE DEALER that sends every frame it gets straight back."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.curve_secretkey = secret.encode()
    sock.curve_publickey = public.encode()
    sock.curve_serverkey = server_public.encode()
    sock.connect(endpoint)
    sock.send(b"hello")  # a ROUTER can only address a peer that has sent something
    conn.send("connected")
    try:
        while True:
            frame = sock.recv()
            if frame == b"stop":
                break
            sock.send(frame)
    finally:
        sock.close(linger=0)
        ctx.term()


def _bare_ping(count: int, interval_s: float, tmp: Path) -> np.ndarray:
    """Round trips (ns) of ``count`` pings to a child process over CURVE on 127.0.0.1, waited for with a Poller."""
    import zmq

    from mimir.net.keys import generate_keypair, load_secret_key

    server = load_secret_key(tmp / "server.key_secret")
    client = generate_keypair()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    sock.curve_server = True
    sock.curve_secretkey = server.secret_bytes
    sock.curve_publickey = server.public_bytes
    sock.bind("tcp://127.0.0.1:*")
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    mp_ctx = mp.get_context("spawn")
    a, b = mp_ctx.Pipe()
    child = mp_ctx.Process(target=_ping_worker, args=(endpoint, server.public, client.public, client.secret, b))
    child.start()
    rtts = []
    try:
        if not a.poll(30):
            raise RuntimeError("ping peer did not start")
        a.recv()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        routing_id = None
        hello_by = time.monotonic() + 30.0
        while routing_id is None:  # the peer says hello first: learn its routing id
            if time.monotonic() > hello_by:
                raise RuntimeError("ping peer did not say hello")
            poller.poll(100)
            try:
                routing_id = sock.recv_multipart(zmq.NOBLOCK)[0]
            except zmq.Again:
                continue
        for _ in range(count):
            time.sleep(interval_s)
            t1 = time.monotonic_ns()
            sock.send_multipart([routing_id, t1.to_bytes(8, "little")])
            while True:
                poller.poll(1000)
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    continue
                t4 = time.monotonic_ns()
                if int.from_bytes(frames[1], "little") == t1:
                    rtts.append(t4 - t1)
                    break
        sock.send_multipart([routing_id, b"stop"])
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
            child.join()
        sock.close(linger=0)
        ctx.term()
    return np.array(rtts, dtype=np.float64)


def _load_1m() -> float | None:
    load = load_average_1min()  # None on Windows
    return None if load is None else round(load, 2)


def _time_transfer(seconds: float, progress: Callable[[str], None]) -> list[dict]:
    import soundfile as sf
    import zmq

    from mimir.config import NetworkConfig, RemoteSourceConfig
    from mimir.sync.trials import Condition, make_trial_audio

    from mimir.net.keys import load_public_key, write_keypair
    from mimir.net.listener import RemoteListener

    load_at_start = _load_1m()
    with tempfile.TemporaryDirectory(prefix="mimir-bench-net-") as tmp:
        d = Path(tmp)
        write_keypair(d / "server")
        write_keypair(d / "raven")
        progress("time transfer: a bare zmq ping (CURVE, 127.0.0.1, a child process) ...")
        ping = _bare_ping(200, 0.01, d)
        audio, _ = make_trial_audio(Condition("bench", "", ppm=80.0, snr_db=10.0, seconds=seconds),
                                    np.random.default_rng(6))
        sf.write(str(d / "w.wav"), audio.astype(np.float32), 48000, subtype="FLOAT")
        cfg = NetworkConfig(listen="tcp://127.0.0.1:*", server_key_file=str(d / "server.key_secret"),
                            sources=[RemoteSourceConfig(source_id="raven", public_key=load_public_key(d / "raven.key"),
                                                        trust="canonical-authority")])
        progress(f"time transfer: one receiver, {seconds:g} s of witness in real time, probes every 0.1 s ...")
        with RemoteListener(cfg, "bench-time", codebook=("mimir-default", 0), time_probe_interval_s=0.1) as listener:
            argv = [sys.executable, "-m", "mimir.net", "receiver", "--source-id", "raven", "--connect",
                    listener.endpoint, "--file", str(d / "w.wav"), "--key", str(d / "raven.key_secret"),
                    "--server-key", str(d / "server.key"), "--json"]
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            poller = zmq.Poller()
            poller.register(listener.socket, zmq.POLLIN)
            deadline = time.monotonic() + seconds + 30.0
            uncertainties = []
            next_look = 0.0
            try:
                while proc.poll() is None and time.monotonic() < deadline:
                    poller.poll(5)
                    listener.poll(1000)
                    if time.monotonic() >= next_look:
                        next_look = time.monotonic() + 0.5
                        tt = listener.source("raven").time_transfer
                        if tt.ready and tt.uncertainty_ns is not None:
                            uncertainties.append(tt.uncertainty_ns)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=10)
            assert proc.stdout is not None
            out = proc.stdout.read()
            proc.stdout.close()
            listener.poll(1000)
            book = listener.table.states["raven"].time
            round_trips = np.array(book._round_trips, dtype=np.float64)
            holds = np.array(book._holds, dtype=np.float64)
            line = listener.authority_line("raven")
            tt = listener.source("raven").time_transfer
    summary = json.loads(out) if out.strip() else {}
    host_line = summary.get("host_line")
    error_us = None
    if line is not None and host_line is not None:
        own = host_line["origin_canonical_ns"] + host_line["scale"] * (line[0] - host_line["origin_host_ns"])
        error_us = round((line[1] - own) / 1e3, 2)

    def pct(x: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(x, q)) / 1e3, 1) if x.size else None

    ping_p50, ping_p99 = pct(ping, 50), pct(ping, 99)
    rt_p50, rt_p99 = pct(round_trips, 50), pct(round_trips, 99)
    unc = np.array(uncertainties, dtype=np.float64)
    unc_p50 = pct(unc, 50)
    ratio = (lambda a, b: round(a / b, 2) if a is not None and b else None)
    return [
        {"name": "bare_zmq_ping", "pings": int(ping.size), "p50_us": ping_p50, "p99_us": ping_p99,
         "min_us": pct(ping, 0)},
        {"name": "time_transfer", "audio_s": summary.get("audio_seconds"), "echoes_used": tt.used,
         "echoes_refused": _nonzero_fields(tt.refused), "round_trip_p50_us": rt_p50, "round_trip_p99_us": rt_p99,
         "round_trip_min_us": pct(round_trips, 0), "hold_p50_us": pct(holds, 50),
         "uncertainty_p50_us": unc_p50, "uncertainty_final_us": None if line is None else round(line[3] / 1e3, 1),
         "error_vs_receivers_own_line_us": error_us,
         "round_trip_p50_vs_ping_p50": ratio(rt_p50, ping_p50), "round_trip_p99_vs_ping_p99": ratio(rt_p99, ping_p99),
         "uncertainty_p50_vs_half_ping_p50": ratio(unc_p50, None if ping_p50 is None else ping_p50 / 2),
         "authority_line": line is not None, "receiver_exit_code": summary.get("exit_code"),
         "load_average_1m_at_start": load_at_start},
    ]


def _nonzero_fields(struct) -> dict:
    return {f: getattr(struct, f) for f in struct.__struct_fields__ if getattr(struct, f)}


# ------------------------------------------------------------------------------------------------- part 3
def _listener_worker(server_key_file: str, sources: list[tuple[str, str]], warm_s: float, measure_s: float,
                     conn) -> None:
    import zmq

    from mimir.config import NetworkConfig, RemoteSourceConfig

    from mimir.net.listener import RemoteListener

    cfg = NetworkConfig(listen="tcp://127.0.0.1:*", server_key_file=server_key_file, sources=[
        RemoteSourceConfig(source_id=sid, public_key=key, trust="trusted-evidence") for sid, key in sources])
    with RemoteListener(cfg, "bench-cap") as listener:
        conn.send(listener.endpoint)
        poller = zmq.Poller()
        poller.register(listener.socket, zmq.POLLIN)

        def run_for(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                poller.poll(5)
                listener.poll(1000)

        conn.recv()  # the generator has connected everyone
        run_for(warm_s)
        frames0 = listener.frames_received
        cpu0 = time.process_time()  # user + system CPU of this process, every thread (as getrusage(RUSAGE_SELF))
        t0 = time.monotonic()
        run_for(measure_s)
        cpu_s = time.process_time() - cpu0
        wall = time.monotonic() - t0
        st = listener.status()
        conn.send({"cpu_s": cpu_s, "wall_s": wall,
                   "frames": listener.frames_received - frames0, "rejected": st.rejected_total.total(),
                   "connected": sum(1 for s in st.sources if s.connected),
                   "handshakes": st.handshakes.succeeded})


def _generator_worker(endpoint: str, server_public: str, clients: list[tuple[str, str, str]], rate_hz: float,
                      seconds: float, conn) -> None:
    import zmq

    from mimir.net.messages import (
        SCHEMA_VERSION,
        Anchor,
        AnchorBatch,
        BufferHealth,
        ClockFitSummary,
        Envelope,
        encode,
    )

    ctx = zmq.Context()
    socks = []
    for _, public, secret in clients:
        s = ctx.socket(zmq.DEALER)
        s.linger = 0
        s.curve_secretkey = secret.encode()
        s.curve_publickey = public.encode()
        s.curve_serverkey = server_public.encode()
        s.connect(endpoint)
        socks.append(s)
    poller = zmq.Poller()
    for s in socks:
        poller.register(s, zmq.POLLIN)
    fit = ClockFitSummary(codebook_id="mimir-default", seed=0, nominal_rate_hz=48000.0, locked=True, segment=0,
                          stream_sample=480000, local_sample_at_epoch=-4_800_000.123, rate_hz=48000.0042,
                          confidence=0.97, mae_samples=0.03, offset_sigma_samples=0.01,
                          rate_sigma_ppm=0.02, anchor_count=48, first_canonical_s=100.2, last_canonical_s=109.8)
    health = BufferHealth(state="locked", samples_consumed=480000, anchors_accepted=48, locks=1)
    session = time.time_ns()
    seqs = [0] * len(socks)
    sent = 0
    t0 = time.monotonic()
    conn.send("connected")
    tick_s = 0.01
    total = len(socks) * rate_hz
    k = 0
    while time.monotonic() - t0 < seconds:
        target = int((time.monotonic() - t0) * total)
        while sent < target:
            i = k % len(socks)
            k += 1
            n = seqs[i]
            kind = n % 3
            body = fit if kind == 0 else health if kind == 2 else AnchorBatch(
                segment=0, decoded_unix_ns=time.time_ns(),
                anchors=[Anchor(event_index=500 + n, canonical_s=(500 + n) * 0.2, local_sample=4800.0 * n + 0.25,
                                confidence=0.95)])
            data = encode(Envelope(v=SCHEMA_VERSION, source_id=clients[i][0], session=session, seq=n, low_water=n,
                                   sent_unix_ns=time.time_ns(), body=body))
            try:
                socks[i].send(data, zmq.NOBLOCK)
                seqs[i] += 1
            except zmq.Again:
                pass
            sent += 1
        for s, _ in poller.poll(0):  # drain acknowledgements
            try:
                while True:
                    s.recv(zmq.NOBLOCK)
            except zmq.Again:
                pass
        time.sleep(tick_s)
    for s in socks:
        s.close(linger=0)
    ctx.term()


def _capacity_step(n: int, warm_s: float, measure_s: float, tmp: Path) -> dict:
    from mimir.net.keys import generate_keypair, load_public_key

    clients = []
    for i in range(n):
        pair = generate_keypair()
        clients.append((f"rx{i:04d}", pair.public, pair.secret))
    ctx = mp.get_context("spawn")
    a, b = ctx.Pipe()
    g_a, g_b = ctx.Pipe()
    listener = ctx.Process(target=_listener_worker, args=(str(tmp / "server.key_secret"),
                                                          [(c[0], c[1]) for c in clients], warm_s, measure_s, b))
    listener.start()
    try:
        if not a.poll(30):
            raise RuntimeError("listener process did not start")
        endpoint = a.recv()
        gen = ctx.Process(target=_generator_worker, args=(endpoint, load_public_key(tmp / "server.key"), clients,
                                                          REPORTS_PER_S, warm_s + measure_s + 2.0, g_b))
        gen.start()
        try:
            if not g_a.poll(60):
                raise RuntimeError("load generator did not start")
            g_a.recv()
            a.send("go")
            if not a.poll(warm_s + measure_s + 60):
                raise RuntimeError("listener did not report")
            r = a.recv()
        finally:
            gen.join(timeout=warm_s + measure_s + 30)
            if gen.is_alive():
                gen.kill()
                gen.join()
    finally:
        listener.join(timeout=30)
        if listener.is_alive():
            listener.kill()
            listener.join()
    cpu_pct = r["cpu_s"] / r["wall_s"] * 100.0
    received = r["frames"] / r["wall_s"]
    return {"name": "listener_cpu", "receivers": n, "reports_per_receiver_per_s": REPORTS_PER_S,
            "reports_per_s_target": n * REPORTS_PER_S, "reports_per_s_received": round(received, 1),
            "listener_cpu_pct": round(cpu_pct, 2),
            "listener_cpu_us_per_report": round(r["cpu_s"] / max(1, r["frames"]) * 1e6, 1),
            "connected": r["connected"], "rejected": r["rejected"], "measure_s": round(r["wall_s"], 2)}


def _capacity(steps: list[int], warm_s: float, measure_s: float, progress: Callable[[str], None]) -> list[dict]:
    from mimir.net.keys import write_keypair

    out = []
    with tempfile.TemporaryDirectory(prefix="mimir-bench-net-") as tmp:
        write_keypair(Path(tmp) / "server")
        for n in steps:
            progress(f"capacity: {n} receivers x {REPORTS_PER_S:g} reports/s ...")
            rec = _capacity_step(n, warm_s, measure_s, Path(tmp))
            progress(f"  listener CPU {rec['listener_cpu_pct']:.1f} % of a core, "
                     f"{rec['reports_per_s_received']:.0f} reports/s received")
            out.append(rec)
            if rec["listener_cpu_pct"] > CPU_LIMIT_PCT:
                break
    receivers = np.array([r["receivers"] for r in out], dtype=np.float64)
    cpu = np.array([r["listener_cpu_pct"] for r in out], dtype=np.float64)
    if receivers.size >= 2:
        slope, intercept = np.polyfit(receivers, cpu, 1)  # CPU % = idle + per-receiver cost x N, over every step
        at_limit = (CPU_LIMIT_PCT - intercept) / slope if slope > 0 else float("inf")
        how = (f"least-squares line over {receivers.size} steps: {intercept:.2f} % + {slope * 100:.2f} % per 100 receivers")
    else:
        at_limit = receivers[0] * CPU_LIMIT_PCT / max(cpu[0], 1e-9)
        how = "scaled from a single step"
    out.append({"name": "listener_capacity", "cpu_limit_pct": CPU_LIMIT_PCT,
                "reports_per_receiver_per_s": REPORTS_PER_S,
                "receivers_at_cpu_limit": int(math.floor(at_limit)) if math.isfinite(at_limit) else None,
                "method": how})
    return out


def run_bench(quick: bool = False, progress: Callable[[str], None] = lambda s: None) -> list[dict]:
    seconds = 15.0 if quick else 30.0
    results = _bytes_and_latency(seconds, progress)
    results += _time_transfer(12.0 if quick else 20.0, progress)
    steps = [25, 100, 300] if quick else [25, 50, 100, 200, 300, 400, 600]
    results += _capacity(steps, warm_s=2.0 if quick else 3.0, measure_s=3.0 if quick else 5.0, progress=progress)
    return results


def format_table(results: list[dict]) -> str:
    lines = []
    for r in results:
        name = r["name"]
        if name == "bytes_per_receiver":
            lines.append(f"bytes per receiver: uplink {r['uplink_bytes_per_s']:.0f} B/s (goal <= "
                         f"{r['goal_uplink_bytes_per_s']:.0f}: {'met' if r['goal_met'] else 'MISSED'}), downlink "
                         f"{r['downlink_bytes_per_s']:.0f} B/s, payload {r['payload_bytes_per_s']:.0f} B/s, "
                         f"{r['reports_per_s']:.2f} reports/s {r['messages_by_kind']}")
        elif name == "decode_to_listener_latency":
            lines.append(f"anchor decode -> listener state: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                         f"max {r['max_ms']} ms over {r['anchors']} anchors ({r['listener_loop']})")
        elif name == "bare_zmq_ping":
            lines.append(f"bare zmq ping (CURVE, 127.0.0.1, two processes): p50 {r['p50_us']} us, "
                         f"p99 {r['p99_us']} us over {r['pings']} pings")
        elif name == "time_transfer":
            lines.append(f"time transfer: round trip p50 {r['round_trip_p50_us']} us "
                         f"({r['round_trip_p50_vs_ping_p50']} x ping), p99 {r['round_trip_p99_us']} us "
                         f"({r['round_trip_p99_vs_ping_p99']} x ping); line uncertainty p50 "
                         f"{r['uncertainty_p50_us']} us ({r['uncertainty_p50_vs_half_ping_p50']} x half a ping), "
                         f"final {r['uncertainty_final_us']} us; error vs the receiver's own line "
                         f"{r['error_vs_receivers_own_line_us']} us; {r['echoes_used']} echoes used, refused "
                         f"{r['echoes_refused']}")
        elif name == "listener_cpu":
            lines.append(f"  {r['receivers']:4d} receivers x {r['reports_per_receiver_per_s']:g}/s: listener CPU "
                         f"{r['listener_cpu_pct']:5.1f} % ({r['listener_cpu_us_per_report']:.0f} us/report), "
                         f"{r['reports_per_s_received']:.0f} reports/s received, {r['connected']} connected")
        elif name == "listener_capacity":
            lines.append(f"listener capacity at {r['cpu_limit_pct']:g} % of a core: {r['receivers_at_cpu_limit']} "
                         f"receivers at {r['reports_per_receiver_per_s']:g} reports/s ({r['method']})")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(format_table(run_bench(quick="--quick" in sys.argv, progress=lambda s: print(s, file=sys.stderr))))
