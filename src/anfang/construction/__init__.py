"""建设、验收、运维与督导 (construction, acceptance, operations, supervision) of the seed's programme."""
