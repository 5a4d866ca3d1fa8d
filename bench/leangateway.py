"""EXPERIMENT (kept in history, reverted): the leanest gateway the shared core allows, as a bound.

Raw ASGI on uvicorn + httptools + uvloop, one idempotent producer (``linger.ms`` 1) with a
thread serving its reports, the shared `Fetcher` for its reply partition, and per call a
future, a timer and a produce. None of the product's admission, validation, limits,
metrics, disconnects, lanes or problem answers. ``python -m bench.leangatewayab RATE SECONDS
PAIRS`` runs it against the stock gateway (docs/PERFORMANCE.md, item 0 of the recommendations).
"""
import asyncio, os, threading, time, uuid
import uvicorn
from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_END
from kafkarpc import protocol
from kafkarpc.fetcher import Fetcher

REQ = os.environ["GATEWAY_REQUEST_TOPIC"]; REP = os.environ["GATEWAY_REPLY_TOPIC"]
BOOT = os.environ["KAFKA_BOOTSTRAP_SERVERS"]; PORT = int(os.environ["GATEWAY_PORT"])
producer = Producer({"bootstrap.servers": BOOT, "linger.ms": 1, "acks": "all", "enable.idempotence": True,
                     "socket.nagle.disable": True})
pending: dict[bytes, asyncio.Future] = {}
CID = protocol.CORRELATION_ID
state = {}

def poll_forever():
    while True:
        producer.poll(0.1)

def on_batch(records, fetched_at):
    for m in records:
        for name, value in m.headers() or ():
            if name == CID:
                fut = pending.pop(value, None)
                if fut is not None and not fut.done():
                    fut.set_result(m.value())
                break

def expire(fut):
    if not fut.done():
        fut.set_exception(TimeoutError())

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                threading.Thread(target=poll_forever, daemon=True).start()
                consumer = Consumer({"bootstrap.servers": BOOT, "group.id": "lean-" + uuid.uuid4().hex,
                                     "enable.auto.commit": False, "fetch.wait.max.ms": 100, "socket.nagle.disable": True})
                fetcher = Fetcher(consumer, name="replies", on_batch=on_batch)
                high = consumer.get_watermark_offsets(TopicPartition(REP, 0), timeout=10)[1]
                fetcher.start(lambda c: c.assign([TopicPartition(REP, 0, high)]))
                await fetcher.started
                state["f"] = fetcher
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"}); return
    if scope["path"] == "/readyz":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"}); return
    body = b""; more = True
    while more:
        msg = await receive(); body += msg.get("body", b""); more = msg.get("more_body", False)
    cid = uuid.uuid4().hex
    key = cid.encode()
    loop = asyncio.get_running_loop()
    fut = loop.create_future(); pending[key] = fut
    deadline = time.time() + 10
    headers = protocol.Request(cid, REP, 0, scope["path"][5:], int(deadline * 1000), body, "application/json").headers()
    producer.produce(REQ, body, key, headers=headers)
    timer = loop.call_later(10, expire, fut)
    try:
        value = await fut
    finally:
        timer.cancel(); pending.pop(key, None)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(value)).encode())]})
    await send({"type": "http.response.body", "body": value})

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, loop="uvloop", http="httptools", log_level="warning", access_log=False, lifespan="on")
