"""dpr-rag's Gradio app (Hugging Face Space entry point). A placeholder until the app issue lands:
it serves a search box over the embedded default corpus."""
import os

import gradio as gr

from dpr_rag import Searcher

searcher = Searcher.open()


def search(question: str, retriever: str, k: int) -> str:
    hits = searcher.search([question], int(k), retriever)[0]
    return "\n\n".join(f"**{h.rank}. {h.passage.title}** ({h.score:.3f})\n\n{h.passage.text}" for h in hits)


demo = gr.Interface(search, [gr.Textbox(label="Question"), gr.Radio(["bm25", "dense", "hybrid"], value="bm25", label="Retriever"),
                             gr.Slider(1, 20, value=5, step=1, label="k")], gr.Markdown(), title="dpr-rag")

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), server_port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
