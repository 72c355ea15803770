"""MQTT sessions and last wills with paho-mqtt, against medmesh's listener.

Usage:
  paho_session.py persistent HOST PORT CLIENT_ID
      Connects with clean_session=False, subscribes to the device's command
      topic (QoS 1), prints "subscribed", disconnects, then waits for a line
      on stdin; reconnects (clean_session=False) and prints
      "session_present=<flag> <payload>" for the first message received.
  paho_session.py will HOST PORT CLIENT_ID
      Connects with a last will on lab/CLIENT_ID/status ("offline", QoS 1;
      outside medmesh's topics, which a client without credentials may not
      address to others), prints "connected", then exits abruptly (no
      DISCONNECT) when a line arrives on stdin.
"""
import os
import sys
import threading

import paho.mqtt.client as mqtt

mode, host, port, client_id = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
commands = f"medmesh/v1/devices/{client_id}/commands"


def client(**kw):
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, **kw)


if mode == "persistent":
    subscribed = threading.Event()
    c = client(clean_session=False)
    c.on_subscribe = lambda *a: subscribed.set()
    c.connect(host, port)
    c.loop_start()
    c.subscribe(commands, qos=1)
    if not subscribed.wait(10):
        raise SystemExit("no SUBACK")
    c.disconnect()
    c.loop_stop()
    print("subscribed", flush=True)
    sys.stdin.readline()

    got = threading.Event()
    state = {}
    c = client(clean_session=False)
    c.on_connect = lambda cl, ud, flags, rc, props: state.update(present=flags.session_present)
    c.on_message = lambda cl, ud, msg: (state.update(payload=msg.payload.decode()), got.set())
    c.connect(host, port)
    c.loop_start()
    if not got.wait(10):
        raise SystemExit("no message after reconnecting")
    c.disconnect()
    c.loop_stop()
    print(f"session_present={state.get('present')} {state['payload']}", flush=True)

elif mode == "will":
    c = client(clean_session=True)
    c.will_set(f"lab/{client_id}/status", "offline", qos=1)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect(host, port, keepalive=30)
    c.loop_start()
    if not connected.wait(10):
        raise SystemExit("no CONNACK")
    print("connected", flush=True)
    sys.stdin.readline()
    os._exit(0)  # the socket closes without a DISCONNECT
