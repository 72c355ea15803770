"""POST one payload with aiocoap (a confirmable request) and print the answer.

Usage: aiocoap_post.py URI CONTENT_FORMAT PAYLOAD
Prints "<code> <payload>", e.g. "2.04 Changed 1 stored".
"""
import asyncio
import sys

from aiocoap import POST, Context, Message


async def main(uri: str, content_format: str, payload: str) -> None:
    context = await Context.create_client_context()
    request = Message(code=POST, uri=uri, payload=payload.encode(), content_format=int(content_format))
    response = await context.request(request).response
    print(response.code, response.payload.decode())
    await context.shutdown()


asyncio.run(main(*sys.argv[1:]))
