"""Every Cypher statement of graph memory, apart from the code that runs them.

Each statement is a literal: values (user ids, names, relation types, vectors) reach Neo4j only as
$parameters, labels and property names are never built from text, and no plugin (APOC, GDS) is used.
Every statement names the user as a parameter and matches both ends of every relationship by it.
"""

SCHEMA_STATEMENTS = (
    "CREATE CONSTRAINT memory_entity_user_name IF NOT EXISTS "
    "FOR (e:MemoryEntity) REQUIRE (e.user_id, e.name_key) IS UNIQUE",
    "CREATE INDEX memory_entity_user IF NOT EXISTS FOR (e:MemoryEntity) ON (e.user_id)",
    "CREATE CONSTRAINT memory_entity_id IF NOT EXISTS FOR (e:MemoryEntity) REQUIRE e.id IS UNIQUE",
    "CREATE INDEX memory_relation_id IF NOT EXISTS FOR ()-[r:MEMORY_RELATION]-() ON (r.id)",
)

# Search reads everything it ranks in one read transaction, in two statements, and ranks in Python:
# 1. every entity of the user as one row of parallel lists (ids, vectors), with those the query names
#    and the user's own node;
# 2. the valid relations around the seed entities, with their fact-sentence vectors.
# The similarity is computed on the worker (numpy over int8 vectors), not in Cypher: at 1,000
# entities per user that is ~5x faster than vector.similarity.cosine over float lists (see docs/graph.md),
# exact per user (Neo4j 5.26's vector index cannot be filtered by user before its top-k), and it puts
# the arithmetic on the horizontally scaled workers instead of the one shared database.
SEARCH_ENTITIES = """
MATCH (e:MemoryEntity {user_id: $user_id})
RETURN collect(e.id) AS ids, collect(coalesce(e.vector, $no_vector)) AS vectors,
       collect(CASE WHEN e.match_key IS NOT NULL AND $query_match CONTAINS e.match_key THEN e.id END) AS named,
       collect(CASE WHEN e.name_key = $self_key THEN e.id END) AS self
"""

SEARCH_RELATIONS = """
UNWIND $seed_ids AS seed_id
MATCH (seed:MemoryEntity {user_id: $user_id, id: seed_id})
MATCH (seed)-[r:MEMORY_RELATION {valid: true}]-(:MemoryEntity {user_id: $user_id})
WHERE r.user_id = $user_id
WITH DISTINCT r
RETURN collect(r.id) AS ids, collect(startNode(r).id) AS source_ids, collect(endNode(r).id) AS destination_ids,
       collect(coalesce(r.created_at, '')) AS created, collect(coalesce(r.vector, $no_vector)) AS vectors
"""

# Details only for the relations that made the cut (one row per relation costs ~0.1 ms to decode).
RELATION_DETAILS = """
UNWIND $relation_ids AS relation_id
MATCH (s:MemoryEntity {user_id: $user_id})-[r:MEMORY_RELATION {id: relation_id}]->(o:MemoryEntity {user_id: $user_id})
WHERE r.user_id = $user_id
RETURN r.id AS id, r.user_id AS user_id, s.name AS source, s.type AS source_type, r.type AS relationship,
       o.name AS destination, o.type AS destination_type, r.memory_ids AS memory_ids,
       r.created_at AS created_at, r.updated_at AS updated_at
"""

INVALIDATE = """
UNWIND $relation_ids AS relation_id
MATCH (:MemoryEntity {user_id: $user_id})-[r:MEMORY_RELATION {id: relation_id}]->(:MemoryEntity {user_id: $user_id})
WHERE r.valid AND r.user_id = $user_id
SET r.valid = false, r.invalidated_at = $now, r.invalidated_write = $write_id, r.invalidated_by = $memory_ids
RETURN count(r) AS invalidated
"""

MERGE_ENTITIES = """
UNWIND $entities AS ent
MERGE (e:MemoryEntity {user_id: $user_id, name_key: ent.name_key})
ON CREATE SET e.id = ent.id, e.name = ent.name, e.type = ent.type, e.match_key = ent.match_key,
              e.vector = ent.vector, e.vector_dims = $dims, e.memory_ids = [], e.created_at = $now,
              e.created_write = $write_id
WITH e, ent, (e.type = $default_type AND ent.type <> $default_type) AS typed_now
// A vector from another embedder (other size) is useless for similarity: replace it.
WITH e, ent, typed_now, (typed_now OR coalesce(e.vector_dims, 0) <> $dims) AS re_embed
SET e.updated_at = $now,
    e.memory_ids = e.memory_ids + [m IN $memory_ids WHERE NOT m IN e.memory_ids],
    e.type = CASE WHEN typed_now THEN ent.type ELSE e.type END,
    e.vector = CASE WHEN re_embed THEN ent.vector ELSE e.vector END,
    e.vector_dims = $dims
RETURN count(CASE WHEN e.created_write = $write_id THEN 1 END) AS created
"""

# MERGE on (source, type, valid, target): restating a known fact adds support instead of a duplicate.
MERGE_RELATIONS = """
UNWIND $relations AS rel
MATCH (s:MemoryEntity {user_id: $user_id, name_key: rel.source_key})
MATCH (o:MemoryEntity {user_id: $user_id, name_key: rel.target_key})
MERGE (s)-[r:MEMORY_RELATION {type: rel.type, valid: true}]->(o)
ON CREATE SET r.id = rel.id, r.user_id = $user_id, r.memory_ids = [], r.created_at = $now,
              r.created_write = $write_id, r.vector = rel.vector, r.vector_dims = $dims
SET r.updated_at = $now, r.memory_ids = r.memory_ids + [m IN $memory_ids WHERE NOT m IN r.memory_ids]
RETURN count(CASE WHEN r.created_write = $write_id THEN 1 END) AS created, count(r) AS merged
"""

DELETE_MEMORY_RELATIONS = """
MATCH (:MemoryEntity {user_id: $user_id})-[r:MEMORY_RELATION]->(:MemoryEntity {user_id: $user_id})
WHERE r.user_id = $user_id AND $memory_id IN r.memory_ids
SET r.memory_ids = [m IN r.memory_ids WHERE m <> $memory_id]
WITH r WHERE size(r.memory_ids) = 0
DELETE r
RETURN count(*) AS removed
"""

DELETE_MEMORY_ENTITIES = """
MATCH (e:MemoryEntity {user_id: $user_id})
WHERE $memory_id IN e.memory_ids
SET e.memory_ids = [m IN e.memory_ids WHERE m <> $memory_id]
WITH e WHERE size(e.memory_ids) = 0 AND NOT (e)--()
DELETE e
RETURN count(*) AS removed
"""

REVERT_CREATED_RELATIONS = """
MATCH (:MemoryEntity {user_id: $user_id})-[r:MEMORY_RELATION]->(:MemoryEntity {user_id: $user_id})
WHERE r.created_write = $write_id
DELETE r
"""

REVERT_INVALIDATIONS = """
MATCH (:MemoryEntity {user_id: $user_id})-[r:MEMORY_RELATION]->(:MemoryEntity {user_id: $user_id})
WHERE r.invalidated_write = $write_id
SET r.valid = true, r.invalidated_at = null, r.invalidated_write = null, r.invalidated_by = null
"""

REVERT_RELATION_SUPPORT = """
MATCH (:MemoryEntity {user_id: $user_id})-[r:MEMORY_RELATION]->(:MemoryEntity {user_id: $user_id})
WHERE any(m IN r.memory_ids WHERE m IN $memory_ids)
SET r.memory_ids = [m IN r.memory_ids WHERE NOT m IN $memory_ids]
"""

REVERT_ENTITY_SUPPORT = """
MATCH (e:MemoryEntity {user_id: $user_id})
WHERE any(m IN e.memory_ids WHERE m IN $memory_ids)
SET e.memory_ids = [m IN e.memory_ids WHERE NOT m IN $memory_ids]
"""

REVERT_CREATED_ENTITIES = """
MATCH (e:MemoryEntity {user_id: $user_id})
WHERE e.created_write = $write_id AND NOT (e)--()
DELETE e
"""

DELETE_USER_BATCH = """
MATCH (e:MemoryEntity {user_id: $user_id})
WITH e LIMIT $batch
DETACH DELETE e
RETURN count(*) AS removed
"""

GRAPH_NODES = """
MATCH (e:MemoryEntity {user_id: $user_id})
RETURN e.id AS id, e.name AS name, e.type AS type, e.memory_ids AS memory_ids,
       e.created_at AS created_at, e.updated_at AS updated_at
ORDER BY e.created_at, e.name_key
LIMIT $limit
"""

GRAPH_EDGES = """
MATCH (s:MemoryEntity {user_id: $user_id})-[r:MEMORY_RELATION]->(o:MemoryEntity {user_id: $user_id})
WHERE r.user_id = $user_id AND ($include_history OR r.valid)
RETURN r.id AS id, s.id AS source, o.id AS target, s.name AS source_name, o.name AS target_name,
       r.type AS relationship, r.valid AS valid, r.memory_ids AS memory_ids, r.created_at AS created_at,
       r.updated_at AS updated_at, r.invalidated_at AS invalidated_at
ORDER BY r.created_at, r.id
LIMIT $limit
"""
