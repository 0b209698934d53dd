#!/usr/bin/env python3
"""Interoperability check with the python-socketio client.

Usage: python_client.py URL [upgrade|polling|websocket ...]

Modes: upgrade (polling, then upgrade to websocket), polling (polling only),
websocket (websocket only). For each mode (default: all three), connects to URL, checks the auth event,
emits `message` and expects `message-back` with the same arguments, calls
`message-with-ack` and checks the ack, and connects to /custom.
Prints one line per check and a final 'N passed, N failed' line; exits 1 on any failure.
"""

import queue
import sys
import time

import socketio

from pycheck import check, expect, summary

TIMEOUT = 5


def run_mode(url, mode):
    transports = {'upgrade': ['polling', 'websocket'], 'polling': ['polling'],
                  'websocket': ['websocket']}[mode]
    sio = socketio.Client(reconnection=False, handle_sigint=False)
    events = queue.Queue()

    @sio.on('auth')
    def on_auth(data):
        events.put(('auth', data))

    @sio.on('message-back')
    def on_back(*args):
        events.put(('message-back', args))

    @sio.on('auth', namespace='/custom')
    def on_custom_auth(data):
        events.put(('custom-auth', data))

    def next_event(kind):
        while True:
            ev, data = events.get(timeout=TIMEOUT)
            if ev == kind:
                return data

    def connect():
        sio.connect(url, transports=transports, auth={'token': 'py-' + mode},
                    namespaces=['/', '/custom'], wait_timeout=TIMEOUT)
        expect(sio.connected, 'client not connected')
        expect(sio.transport() in ('polling', 'websocket'), f'transport {sio.transport()}')

    def auth():
        data = next_event('auth')
        expect(data == {'token': 'py-' + mode}, f'auth payload {data!r}')
        data = next_event('custom-auth')
        expect(data == {'token': 'py-' + mode}, f'/custom auth payload {data!r}')

    def echo():
        sio.emit('message', ('héllo ✓ 😀', 42, {'nested': [True, None, 1.5]}))
        args = next_event('message-back')
        expect(args == ('héllo ✓ 😀', 42, {'nested': [True, None, 1.5]}), f'echo {args!r}')

    def echo_binary():
        payload = bytes(range(256))
        sio.emit('message', (payload, {'b': b'\x00\x01'}))
        args = next_event('message-back')
        expect(args == (payload, {'b': b'\x00\x01'}), f'binary echo {args!r}')

    def ack():
        res = sio.call('message-with-ack', ('a', 1, [2, 3]), timeout=TIMEOUT)
        expect(res == ('a', 1, [2, 3]), f'ack {res!r}')
        res = sio.call('message-with-ack', 'single', timeout=TIMEOUT)
        expect(res == 'single', f'ack {res!r}')

    def upgraded():
        if mode != 'upgrade':
            expect(sio.transport() == mode, f'transport {sio.transport()}')
        else:
            # the upgrade runs in the background; give it a moment
            deadline = time.time() + TIMEOUT
            while sio.transport() != 'websocket' and time.time() < deadline:
                time.sleep(0.05)
            expect(sio.transport() == 'websocket', f'not upgraded: {sio.transport()}')
            sio.emit('message', 'after upgrade')
            args = next_event('message-back')
            expect(args == ('after upgrade',), f'echo after upgrade {args!r}')

    check(f'{mode}: connect', connect)
    if sio.connected:
        check(f'{mode}: auth event on / and /custom', auth)
        check(f'{mode}: message -> message-back', echo)
        check(f'{mode}: binary message -> message-back', echo_binary)
        check(f'{mode}: call() with ack', ack)
        check(f'{mode}: transport', upgraded)
    try:
        sio.disconnect()
    except Exception:  # noqa: BLE001
        pass


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    url = sys.argv[1]
    modes = sys.argv[2:] or ['upgrade', 'polling', 'websocket']
    for mode in modes:
        run_mode(url, mode)
    return summary()


if __name__ == '__main__':
    sys.exit(main())
