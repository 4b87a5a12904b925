"""A local comparison page: ``edgecodec serve``, then open http://127.0.0.1:8000.

Upload an image, pick a quality or a target size and a model, and compare the edgecodec
reconstruction with JPEG, WebP, AVIF, JPEG XL and HEIC files of the same size (the closest that
does not exceed it), with bytes, bpp, PSNR, MS-SSIM and, optionally, ST-LPIPS. Everything runs on this machine:
the page's HTML, JavaScript and CSS ship in the package (``static/``), no CDN is used, and the
images stay in memory. ``create_app`` builds the FastAPI application; ``command`` adds the CLI's
``serve`` subcommand.
"""
