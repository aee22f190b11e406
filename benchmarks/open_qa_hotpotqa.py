"""HotpotQA's paragraphs as an open-domain QA corpus: write ``questions.jsonl`` (the generic QA JSONL,
``{"id", "question", "answers"}``) and ``corpus.jsonl`` (every context paragraph of the file, BEIR format) for
``rankwise rag --dataset open-qa``.

Yes/no questions are left out: answer recall@k (a gold answer string in the top-k passages) is undefined for them.

    python benchmarks/open_qa_hotpotqa.py $RANKWISE_DATA/hotpotqa-train100/hotpotqa_train.json /tmp/hotpot-open
    rankwise rag --dataset open-qa /tmp/hotpot-open/questions.jsonl --generator none --out /tmp/odqa/bm25
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rankwise.data.files import atomic_writer
from rankwise.data.hotpotqa import hotpotqa_dataset, load_hotpotqa
from rankwise.evaluate.qa import normalize_answer


def convert(source: Path, out_dir: Path) -> tuple[int, int, int]:
    """Write the two files; returns (questions written, yes/no questions left out, paragraphs)."""
    examples = load_hotpotqa(source)
    corpus = hotpotqa_dataset(examples, source=str(source)).corpus
    out_dir.mkdir(parents=True, exist_ok=True)
    kept = [e for e in examples if e.answer and normalize_answer(e.answer) not in ("yes", "no")]
    with atomic_writer(out_dir / "questions.jsonl") as out:
        for e in kept:
            out.write(json.dumps({"id": e.id, "question": e.question, "answers": [e.answer]}) + "\n")
    with atomic_writer(out_dir / "corpus.jsonl") as out:
        for doc in corpus.values():
            out.write(json.dumps({"_id": doc.id, "title": doc.title, "text": doc.text}) + "\n")
    return len(kept), sum(1 for e in examples if e.answer) - len(kept), len(corpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="HotpotQA JSON file")
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    kept, yes_no, paragraphs = convert(args.source, args.out_dir)
    print(f"{kept} questions ({yes_no} yes/no left out), {paragraphs} paragraphs -> {args.out_dir}")


if __name__ == "__main__":
    main()
