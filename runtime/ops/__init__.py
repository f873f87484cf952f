"""Operations: the status, monitoring and incidents of namespaces."""
