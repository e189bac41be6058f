"""dpr-rag's Gradio app, and the Hugging Face Space entry point: `python app.py` serves on 127.0.0.1:7860
(GRADIO_SERVER_NAME / GRADIO_SERVER_PORT change it). The app lives in dpr_rag/app/; its settings are
environment variables (see dpr_rag/app/config.py)."""

from dpr_rag.app import main

if __name__ == "__main__":
    main()
