"""Publishing: collection versions, their citations, bags, fixity, and the release index."""
