"""`LOAD DATA LOCAL INFILE` served from memory, never from the file system.

Bulk loads (batch materialization) send their rows with `LOAD DATA LOCAL`: MariaDB reads that
text for about a quarter less CPU per row than the same rows in a multi-row INSERT, and a
batch's write is bound by the database's one thread for the transaction
(docs/decisions/0019-messages-indexes.md).

The stock driver answers the server's request for the data by opening the file the request
names. With the capability on, a compromised or impersonated database server could then read
any file the application can read. This module replaces that answer (aiomysql's
`MySQLResult._read_load_local_packet`): the only data ever sent is the bytes handed to
`serve()` for the statement running on that connection, whatever name the server asks for; a
request at any other time is answered with no data, so the server loads nothing.
"""

from __future__ import annotations

from aiomysql import connection as aiomysql_connection
from pymysql.err import OperationalError

_PAYLOAD = "_wework_local_infile_payload"
_MAX_PACKET = aiomysql_connection.MAX_PACKET_LEN


def serve(driver_connection: object, payload: bytes) -> None:
    """Hands `payload` to the next LOAD DATA LOCAL request on `driver_connection` (aiomysql)."""
    setattr(driver_connection, _PAYLOAD, payload)


def withdraw(driver_connection: object) -> None:
    """Forgets a payload that no request took (the statement failed before asking)."""
    setattr(driver_connection, _PAYLOAD, None)


async def _answer_from_memory(self, first_packet) -> None:
    conn = self.connection
    aiomysql_connection.LoadLocalPacketWrapper(first_packet)  # checks the packet; its name is ignored
    payload = memoryview(getattr(conn, _PAYLOAD, None) or b"")
    setattr(conn, _PAYLOAD, None)  # one statement, one payload
    try:
        for start in range(0, len(payload), _MAX_PACKET):
            conn.write_packet(payload[start:start + _MAX_PACKET])
    finally:
        conn.write_packet(b"")  # end of data
    ok_packet = await conn._read_packet()
    if not ok_packet.is_ok_packet():
        raise OperationalError(2014, "Commands Out of Sync")
    self._read_ok_packet(ok_packet)


def install() -> None:
    """Makes every aiomysql connection of this process answer LOAD DATA LOCAL from memory only.
    Idempotent; called before any MariaDB engine connects (wework.persistence.database)."""
    aiomysql_connection.MySQLResult._read_load_local_packet = _answer_from_memory
