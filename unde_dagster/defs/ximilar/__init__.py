"""`ximilar_index`: pilot SKUs in Ximilar visual search; runs on the ximilar-sync host."""
