"""RawMessage travels to the workers inside its decode task: its payload must leave the pickle as a buffer.

Dask pickles task arguments with protocol 5 and a buffer callback; a payload pickled in-band is copied into the
pickle and the pickle is then scanned whole (distributed looks for ``__main__`` in it), which was ~40 % of the
driver's CPU on a Kafka stream. These tests pin the out-of-band path and the round trips of every protocol.
"""

from __future__ import annotations

import copy
import pickle

import pytest
from distributed.protocol import deserialize, serialize
from distributed.protocol import pickle as dask_pickle

from alert_broker.surveys.messages import RawMessage

MESSAGE = RawMessage("kafka:ztf", 3, 42, bytes(range(256)) * 400, key="ZTF21abc", timestamp=1.5e9)


def test_dask_pickles_the_payload_out_of_band():
    buffers: list = []
    pickled = dask_pickle.dumps([MESSAGE, MESSAGE], buffer_callback=buffers.append)
    assert len(pickled) < 1000  # the envelope only
    assert [memoryview(b).nbytes for b in buffers] == [len(MESSAGE.payload)]  # one buffer, shared by both
    back = dask_pickle.loads(pickled, buffers=buffers)
    assert back == [MESSAGE, MESSAGE] and type(back[0].payload) is bytes


def test_distributed_serialize_round_trip():
    header, frames = serialize([MESSAGE], serializers=("pickle",))
    assert len(frames) == 2  # the pickle and the payload's frame
    assert deserialize(header, frames) == [MESSAGE]


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_every_protocol_round_trips(protocol):
    back = pickle.loads(pickle.dumps(MESSAGE, protocol=protocol))
    assert back == MESSAGE and type(back.payload) is bytes


def test_copies_and_a_payload_left_on_disk():
    assert copy.copy(MESSAGE) == MESSAGE and copy.deepcopy(MESSAGE) == MESSAGE
    lazy = RawMessage("archive:night", 0, 7, b"", key="a.avro", path="/data/a.avro")
    buffers: list = []
    back = dask_pickle.loads(dask_pickle.dumps(lazy, buffer_callback=buffers.append), buffers=buffers)
    assert back == lazy and not buffers
