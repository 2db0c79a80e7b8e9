"""The loopback-UDP doorbell (Windows' doorbell) runs here too: timed waits, rings across processes, pollers."""
import select
import subprocess
import sys
import textwrap
import time

import msgspec
import pytest
import zmq

from ringbuf import U64, RingReader
from ringbuf.platform.udp import UdpListener, UdpSender


def test_wait_times_out_then_a_ring_wakes_it_and_drain_empties_it():
    listener, sender = UdpListener(), UdpSender()
    try:
        assert 0 < listener.bell_id < 65536
        started = time.monotonic()
        assert listener.wait(0.05) is False
        assert time.monotonic() - started >= 0.04
        for _ in range(5):
            sender.ring(listener.bell_id)
        assert listener.wait(2.0) is True  # consumes one ring; the rest are leftovers, drained below
        listener.drain()
        assert listener.wait(0) is False
        sender.ring(listener.bell_id)
        deadline = time.monotonic() + 2
        while not select.select([listener.fileno()], [], [], 0.01)[0]:
            assert time.monotonic() < deadline
        listener.drain()
        assert not select.select([listener.fileno()], [], [], 0)[0]
    finally:
        listener.close()
        listener.close()  # idempotent
        sender.close()


def test_ringing_a_closed_or_invalid_bell_neither_blocks_nor_raises():
    listener, sender = UdpListener(), UdpSender()
    port = listener.bell_id
    listener.close()
    for _ in range(3):
        sender.ring(port)
    for bad in (0, 65536, 1 << 40):  # not a port: another platform's bell id
        sender.ring(bad)
    sender.close()


def test_zmq_poller_waits_on_the_doorbell_beside_a_socket():
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    listener, sender = UdpListener(), UdpSender()
    try:
        poller = zmq.Poller()
        poller.register(listener.fileno(), zmq.POLLIN)
        poller.register(sock, zmq.POLLIN)
        assert dict(poller.poll(20)) == {}
        sender.ring(listener.bell_id)
        events = dict(poller.poll(2000))
        assert events == {listener.fileno(): zmq.POLLIN}
    finally:
        sock.close(linger=0)
        ctx.term()
        listener.close()
        sender.close()


def test_a_full_socket_buffer_drops_rings_without_blocking_the_writer():
    listener, sender = UdpListener(), UdpSender()
    try:
        started = time.monotonic()
        for _ in range(20_000):  # far more than the receive buffer holds
            sender.ring(listener.bell_id)
        assert time.monotonic() - started < 30  # generous: the point is that it returned at all
        assert listener.wait(1.0) is True
        listener.drain()
        assert listener.wait(0) is False
    finally:
        listener.close()
        sender.close()


class Stamp(msgspec.Struct):
    sequence: U64


WRITER = textwrap.dedent("""
    import sys, time
    import msgspec, numpy as np
    import ringbuf.ring
    from ringbuf import Ring, U64
    from ringbuf.platform import PLATFORM
    from ringbuf.platform.udp import UdpSender

    class Stamp(msgspec.Struct):
        sequence: U64

    PLATFORM.doorbell_sender = lambda rig: UdpSender()  # this writer rings UDP doorbells, as on Windows
    rig, count = sys.argv[1], int(sys.argv[2])
    ring = Ring.create("u", rig=rig, descriptor=Stamp, capacity=4096)
    print("ready", flush=True)
    sys.stdin.readline()
    for n in range(count):
        ring.publish(n)
        time.sleep(0.002)
    sys.stdin.readline()
    ring.close()
""")


@pytest.mark.slow
def test_a_reader_blocked_on_a_udp_doorbell_is_woken_by_a_writer_process(rig):
    count = 200
    proc = subprocess.Popen([sys.executable, "-c", WRITER, rig, str(count)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    listener = UdpListener()
    try:
        assert proc.stdout.readline().strip() == "ready"
        reader = RingReader.attach("u", rig=rig, descriptor=Stamp, doorbell=listener)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        got, wakes = [], 0
        deadline = time.monotonic() + 60
        while len(got) < count and time.monotonic() < deadline:
            if reader.arm():
                reader.disarm()
            else:
                wakes += listener.wait(5.0)
                reader.disarm()
            while (item := reader.read()) is not None:
                got.append(item.sequence)
        assert got == list(range(count)) and reader.lost == 0
        assert wakes > 0  # the reader slept on the UDP doorbell and the writer process woke it
        reader.close()
        proc.stdin.write("done\n")
        proc.stdin.flush()
        assert proc.wait(30) == 0
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
