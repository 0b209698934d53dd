#!/usr/bin/env python3
"""Homelette's own client (python-socketio) against the homelette profile.

Usage: python_homelette.py URL ALICE_ID ALICE_TOKEN BOB_ID BOB_TOKEN [websocket|polling|upgrade]

Connects two users the way Homelette's socket test client does: a
socketio.Client with socketio_path='socket' and the JWT in the URL's query
(URL?token=...), one handler per event. Alice learns her id from the first
user_online she gets and receives online_users; Bob comes online; they
exchange private_message (Bob gets private_message, Alice message_delivered,
the same stored message), Alice types to Bob, Bob leaves (user_offline).
The mode picks the transports (websocket, as Homelette's client, by default).
Prints one line per check and 'N passed, N failed'; exits 1 on any failure.
"""

import datetime
import queue
import re
import sys

import socketio

from pycheck import check, expect, summary

TIMEOUT = 5
EVENTS = ('user_online', 'online_users', 'user_offline', 'private_message',
          'conversation_message', 'message_delivered', 'user_typing', 'error')
UUID = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$')

class UserClient:
    """One user, as Homelette's test client: a handler per event, all queued."""

    def __init__(self, name, url, token, transports):
        self.name = name
        self.url = f'{url}?token={token}'
        self.transports = transports
        self.real_user_id = None
        self.events = queue.Queue()
        self.sio = socketio.Client(reconnection=False, handle_sigint=False)
        for event in EVENTS:
            self.sio.on(event, self._recorder(event))

    def _recorder(self, event):
        def handler(data):
            if event == 'user_online' and self.real_user_id is None:
                self.real_user_id = data.get('user_id')
            self.events.put((event, data))
        return handler

    def connect(self):
        self.sio.connect(self.url, socketio_path='socket', transports=self.transports,
                         wait_timeout=TIMEOUT)
        expect(self.sio.connected, f'{self.name} not connected')

    def next(self, kind, pred=lambda data: True):
        """The next `kind` event matching pred; others of that kind before it are dropped."""
        while True:
            event, data = self.events.get(timeout=TIMEOUT)
            if event == kind and pred(data):
                return data
            if event == 'error':
                raise AssertionError(f'{self.name} got error {data!r} waiting for {kind}')

    def disconnect(self):
        try:
            self.sio.disconnect()
        except Exception:  # noqa: BLE001
            pass


def check_message(m, sender, recipient, content):
    expect(isinstance(m, dict), f'message {m!r}')
    expect(sorted(m) == sorted(['message_id', 'sender_id', 'recipient_id', 'content',
                                'timestamp', 'is_read']), f'members of {m!r}')
    expect(UUID.match(m['message_id']), f'message_id {m["message_id"]!r}')
    expect((m['sender_id'], m['recipient_id'], m['content']) == (sender, recipient, content),
           f'message {m!r}')
    expect(m['is_read'] is False, f'is_read {m["is_read"]!r}')
    ts = datetime.datetime.fromisoformat(m['timestamp'])
    expect(ts.tzinfo is None, f'timestamp {m["timestamp"]!r} has a zone')
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    age = abs((now - ts).total_seconds())
    expect(age < 60, f'timestamp {m["timestamp"]!r} is not UTC now')


def run(url, alice_id, alice_token, bob_id, bob_token, mode):
    transports = {'websocket': ['websocket'], 'polling': ['polling'],
                  'upgrade': ['polling', 'websocket']}[mode]
    alice = UserClient('alice', url, alice_token, transports)
    bob = UserClient('bob', url, bob_token, transports)
    sent = {}

    def alice_connects():
        alice.connect()
        data = alice.next('user_online')
        expect(data == {'user_id': alice_id}, f'first user_online {data!r}')
        expect(alice.real_user_id == alice_id, f'real_user_id {alice.real_user_id!r}')

    def alice_online_users():
        data = alice.next('online_users')
        expect(list(data) == ['users'], f'online_users {data!r}')
        expect(data['users'].count(alice_id) == 1, f'online_users {data!r}')
        expect(bob_id not in data['users'], f'online_users {data!r}')

    def bob_connects():
        bob.connect()
        expect(bob.next('user_online') == {'user_id': bob_id}, 'bob: first user_online')
        data = bob.next('online_users')
        expect(data['users'].count(alice_id) == 1 and data['users'].count(bob_id) == 1,
               f'online_users {data!r}')
        data = alice.next('user_online', lambda d: d.get('user_id') == bob_id)
        expect(data == {'user_id': bob_id}, f'alice: user_online {data!r}')

    def private_message():
        content = 'Hello bob, I am alice ✓'
        alice.sio.emit('private_message', {'sender_id': alice.real_user_id,
                                           'recipient_id': bob.real_user_id, 'content': content})
        m = bob.next('private_message')
        check_message(m, alice_id, bob_id, content)
        delivered = alice.next('message_delivered')
        expect(delivered == m, f'message_delivered {delivered!r} is not {m!r}')
        sent['first'] = m['message_id']

    def reply():
        bob.sio.emit('private_message', {'sender_id': bob.real_user_id,
                                         'recipient_id': alice.real_user_id,
                                         'content': 'nice to meet you!'})
        m = alice.next('private_message')
        check_message(m, bob_id, alice_id, 'nice to meet you!')
        expect(m['message_id'] != sent.get('first'), 'the same message_id twice')
        expect(bob.next('message_delivered') == m, 'bob: message_delivered')

    def typing():
        alice.sio.emit('typing', {'user_id': alice.real_user_id, 'recipient_id': bob_id,
                                  'is_typing': True})
        data = bob.next('user_typing')
        expect(data == {'user_id': alice_id, 'is_typing': True}, f'user_typing {data!r}')

    def unauthorized():
        alice.sio.emit('private_message', {'sender_id': bob_id, 'recipient_id': bob_id,
                                           'content': 'I am bob'})
        data = alice.next('error')
        expect(data == {'message': 'unauthorized'}, f'error {data!r}')

    def bob_leaves():
        bob.disconnect()
        data = alice.next('user_offline', lambda d: d.get('user_id') == bob_id)
        expect(data == {'user_id': bob_id}, f'user_offline {data!r}')

    def transport():
        if mode != 'upgrade':
            expect(alice.sio.transport() == mode, f'transport {alice.sio.transport()}')

    check(f'{mode}: alice connects, her first user_online is her own id', alice_connects)
    if alice.sio.connected:
        check(f'{mode}: online_users lists alice once', alice_online_users)
        check(f'{mode}: bob connects; alice gets user_online, bob online_users', bob_connects)
        if bob.sio.connected:
            check(f'{mode}: private_message to bob, message_delivered to alice', private_message)
            check(f'{mode}: bob replies', reply)
            check(f'{mode}: typing reaches bob as user_typing', typing)
            check(f'{mode}: another sender_id is unauthorized', unauthorized)
            check(f'{mode}: bob leaves, alice gets user_offline', bob_leaves)
        check(f'{mode}: transport', transport)
    alice.disconnect()
    bob.disconnect()


def main():
    if len(sys.argv) not in (6, 7):
        print(__doc__)
        return 2
    url, alice_id, alice_token, bob_id, bob_token = sys.argv[1:6]
    mode = sys.argv[6] if len(sys.argv) == 7 else 'websocket'
    run(url, alice_id, alice_token, bob_id, bob_token, mode)
    return summary()


if __name__ == '__main__':
    sys.exit(main())
