"""A quixstreams word count in exactly-once mode: words are regrouped by value (a repartition
topic), counted in a RocksDB state store (a compacted changelog topic), and each new count is
written to the output topic. Stops after `idle` seconds without input.

    quix_wordcount.py BOOTSTRAP INPUT OUTPUT GROUP STATE_DIR IDLE_SECONDS
"""

import sys

from quixstreams import Application


def count(word, state):
    total = state.get("count", 0) + 1
    state.set("count", total)
    return {"word": word, "count": total}


def main():
    bootstrap, source, sink, group, state_dir, idle = sys.argv[1:7]
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        processing_guarantee="exactly-once",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        commit_interval=0.5,
    )
    words = app.topic(source, key_deserializer="string", value_deserializer="string")
    counts = app.topic(sink, key_serializer="string", value_serializer="json")
    sdf = app.dataframe(words)
    sdf = sdf.group_by(lambda word: word, name="word")
    sdf = sdf.apply(count, stateful=True)
    sdf.to_topic(counts)
    app.run(timeout=float(idle))


if __name__ == "__main__":
    main()
