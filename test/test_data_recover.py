"""Recovering bags that were never closed: what was flushed comes back exactly, a cut file gives back a prefix of
its messages and never anything else, ingest --recover rebuilds and ingests them."""

import shutil

import numpy as np
import pytest

from lewm_ros.data.bags import BagError, BagReader, BagWriter
from lewm_ros.data.cache import TrainingCache
from lewm_ros.data.ingest import main as ingest_main
from lewm_ros.data.recover import FAILURE_NOTE, recover_bag

from .test_data_ingest import write_episode

TOPIC = '/state'


def write_numbers(writer: BagWriter, numbers, size: int = 50) -> None:
    layout = writer.message('std_msgs/msg/MultiArrayLayout', dim=[], data_offset=0)
    for k in numbers:
        writer.write(TOPIC, writer.message('std_msgs/msg/Float64MultiArray', layout=layout,
                                           data=np.full(size, float(k))), 1_000_000_000 + k * 1000)


def numbers(bag) -> list[int]:
    with BagReader(bag) as reader:
        return [int(m.msg.data[0]) for m in reader.messages([TOPIC])]


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_what_was_flushed_before_the_process_died_is_recovered_exactly(tmp_path, storage):
    writer = BagWriter(tmp_path / 'live', storage)
    write_numbers(writer, range(30))
    writer.flush()
    write_numbers(writer, range(30, 45))  # not flushed: still in the writer's memory when it dies
    shutil.copytree(tmp_path / 'live', tmp_path / 'died')  # the files as a SIGKILL would leave them
    writer.close()
    (tmp_path / 'died' / FAILURE_NOTE).write_text('writing failed: [Errno 28] No space left on device\n')
    recovery = recover_bag(tmp_path / 'died')
    assert numbers(tmp_path / 'died') == list(range(30))
    assert (recovery.messages, recovery.topics) == (30, {TOPIC: 30})
    assert 'No space left' in recovery.note and 'recovered' in recovery.summary()
    assert recovery.original.name == f'live.{"mcap" if storage == "mcap" else "db3"}.unclosed'  # kept as it was
    with pytest.raises(BagError, match='nothing to recover'):
        recover_bag(tmp_path / 'died')  # closed now


def test_a_sqlite3_transaction_open_at_the_kill_is_rolled_back_and_its_journal_kept_with_the_original(tmp_path):
    writer = BagWriter(tmp_path / 'live' / 'bag', 'sqlite3')
    write_numbers(writer, range(30), size=5000)
    writer.flush()
    write_numbers(writer, range(30, 45), size=5000)  # 600 kB uncommitted: sqlite has started its journal
    shutil.copytree(tmp_path / 'live' / 'bag', tmp_path / 'died' / 'bag')  # as a SIGKILL leaves it, same name
    writer.close()
    bag = tmp_path / 'died' / 'bag'
    assert (bag / 'bag.db3-journal').exists()
    recover_bag(bag)
    assert numbers(bag) == list(range(30))
    assert sorted(item.name for item in bag.iterdir()) == [
        'bag.db3', 'bag.db3.unclosed', 'bag.db3.unclosed-journal', 'metadata.yaml']  # no journal beside the new file


def test_a_recovery_cut_short_runs_again_from_the_original(tmp_path):
    with BagWriter(tmp_path / 'bag', 'mcap') as writer:
        write_numbers(writer, range(12))
    bag = tmp_path / 'bag'
    (bag / 'metadata.yaml').unlink()
    original = (bag / 'bag.mcap').read_bytes()
    # cut short after setting the original aside and moving the rebuilt storage file in, before its metadata.yaml
    (bag / 'bag.mcap').rename(bag / 'bag.mcap.unclosed')
    (bag / 'bag.mcap').write_bytes(b'half a rebuilt file')
    (tmp_path / '.bag.recovering').mkdir()  # and its scratch folder
    recovery = recover_bag(bag)
    assert numbers(bag) == list(range(12)) and recovery.original == bag / 'bag.mcap.unclosed'
    assert (bag / 'bag.mcap.unclosed').read_bytes() == original and not (tmp_path / '.bag.recovering').exists()


def test_an_mcap_cut_anywhere_gives_back_a_prefix_of_its_messages(tmp_path):
    with BagWriter(tmp_path / 'whole', 'mcap') as writer:
        for start in range(0, 60, 6):  # a chunk every 6 messages
            write_numbers(writer, range(start, start + 6))
            writer.flush()
    data = (tmp_path / 'whole' / 'whole.mcap').read_bytes()
    recovered = []
    for cut in np.linspace(100, len(data), 25).astype(int):
        bag = tmp_path / f'cut_{cut}'
        bag.mkdir()
        (bag / f'cut_{cut}.mcap').write_bytes(data[:cut])
        try:
            recover_bag(bag)
        except BagError as err:
            assert 'no complete message' in str(err)
            recovered.append(0)
            continue
        got = numbers(bag)
        assert got == list(range(len(got)))  # a prefix, nothing invented
        recovered.append(len(got))
    assert recovered == sorted(recovered) and recovered[-1] == 60 and 0 < recovered[len(recovered) // 2] < 60


def test_garbage_is_refused_naming_the_bag(tmp_path):
    bag = tmp_path / 'garbage'
    bag.mkdir()
    (bag / 'garbage.mcap').write_bytes(b'not an mcap file at all')
    with pytest.raises(BagError, match=r'garbage.*not mcap'):
        recover_bag(bag)
    assert [item.name for item in bag.iterdir()] == ['garbage.mcap']  # a failed recovery changes nothing
    (bag / 'garbage.mcap').unlink()
    with pytest.raises(BagError, match=r'expected one \.mcap or \.db3'):
        recover_bag(bag)


def test_a_sqlite3_file_with_a_damaged_schema_is_refused_naming_the_bag(tmp_path):
    """(found by the long fuzz profile: sqlite's error quoted the damaged schema, which is not UTF-8)"""
    with BagWriter(tmp_path / 'bag', 'sqlite3') as writer:
        write_numbers(writer, range(3))
    (tmp_path / 'bag' / 'metadata.yaml').unlink()
    storage = tmp_path / 'bag' / 'bag.db3'
    data = bytearray(storage.read_bytes())
    data[data.index(b'CREATE TABLE topics') + 2] = 0xC5  # 'CR\xc5ATE': a syntax error sqlite quotes
    storage.write_bytes(bytes(data))
    with pytest.raises(BagError, match='bag: cannot read its sqlite3 file'):
        recover_bag(tmp_path / 'bag')


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_ingest_recover_rebuilds_an_unclosed_bag_and_ingests_it(tmp_path, capsys, storage):
    expected = write_episode(tmp_path / 'bags' / 'episode', storage, count=12)['decoded']
    (tmp_path / 'bags' / 'episode' / 'metadata.yaml').unlink()  # closed by nobody
    args = [str(tmp_path / 'bags'), '--out', str(tmp_path / 'cache'), '--size', '16', '--control-period', '0.1',
            '--state-topic', 'state']
    assert ingest_main(args) == 1
    assert 'lewm-ingest --recover' in capsys.readouterr().err
    assert ingest_main([*args, '--recover']) == 0
    out = capsys.readouterr().out
    assert 'recovered' in out and '1 bag(s) ingested' in out, out
    cache = TrainingCache(tmp_path / 'cache')
    assert cache.index['frames'] == len(expected) == 12
    assert ingest_main([*args, '--recover']) == 0  # nothing left to recover, nothing new to ingest
    assert '0 bag(s) ingested, 1 already there' in capsys.readouterr().out
