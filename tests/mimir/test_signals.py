"""stop_on_signals: a nested signal never re-enters Event.set() (that deadlocked a worker)."""
import os
import signal
import threading

from mimir.signals import stop_on_signals


class ReenteringEvent(threading.Event):
    """Delivers a second SIGTERM to the handler from inside set(), as a real signal can.

    A real Event.set() holds a non-reentrant lock at that point, so a nested
    set() would block forever; this one records the re-entry instead.
    """

    def __init__(self) -> None:
        super().__init__()
        self.signals_delivered_inside = 0
        self.reentered = False
        self._inside = False

    def set(self) -> None:
        if self._inside:
            self.reentered = True  # a real Event would deadlock right here
            return
        self._inside = True
        try:
            if self.signals_delivered_inside == 0:
                self.signals_delivered_inside += 1
                signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
            super().set()
        finally:
            self._inside = False


def test_a_signal_inside_the_handler_does_not_reenter_event_set():
    stop = ReenteringEvent()
    with stop_on_signals(stop):
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    assert stop.is_set() and stop.signals_delivered_inside == 1
    assert not stop.reentered


def test_real_signals_set_the_event_and_previous_handlers_come_back():
    before = signal.getsignal(signal.SIGINT)
    stop = threading.Event()
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(2.0)
    assert signal.getsignal(signal.SIGINT) is before
