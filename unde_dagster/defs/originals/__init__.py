"""`product_originals`: photos through the proxy into S3; runs on the photo-downloader host."""
