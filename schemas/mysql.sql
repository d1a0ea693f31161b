-- APEL server schema for MariaDB (10.4+) and MySQL (8.0+).
--
-- Load with:  mysql apel < schemas/mysql.sql   (or apel.db.mysql_backend.apply_schema)
-- Re-running it is safe: tables are created if missing, views are replaced.
-- Every table and column is also described in apel/db/tables.py (derived from the record
-- fields), which tests/test_schema_columns.py compares with this file: change both.
--
-- Design notes (see shared/spec/database.md):
-- * Every table sets utf8mb4_general_ci explicitly: case-insensitive and PAD SPACE, so
--   'RAL-LCG2' = 'ral-lcg2 ' in lookups, primary keys and GROUP BY, on MariaDB and on
--   MySQL 8 alike (MySQL 8's default utf8mb4_0900_ai_ci is NO PAD).
-- * No stored procedures: the loader computes derived columns (EndYear/EndMonth,
--   MeasurementTime/Month/Year, null -> 0 defaults, ServiceLevel rounding) in Python
--   (apel/db/rows.py) and writes with REPLACE, so the last received record per key wins.
-- * Works under ONLY_FULL_GROUP_BY, STRICT_TRANS_TABLES, NO_ZERO_IN_DATE, NO_ZERO_DATE,
--   ERROR_FOR_DIVISION_BY_ZERO: no zero dates anywhere; every view column is either a
--   grouping column or an aggregate, so its value is defined.
-- * A completed cloud VM without EndTime has MeasurementTime NULL and
--   MeasurementMonth = MeasurementYear = 0 (the old schema used the zero date, which
--   NO_ZERO_DATE forbids); a VM without StartTime and RecordCreateTime likewise.
-- * Datetimes are UTC. UpdateTime is a TIMESTAMP; the backends set time_zone '+00:00'.
-- * Durations and sizes are BIGINT UNSIGNED: values above 2^31 are stored exactly.
-- * No reserved words as table or column names (the storage groups table is GroupNames).
--   The one exception is the VStarRecords column `Group`, named after the StAR field
--   the unloader emits; quote it when naming it explicitly.

-- ---------------------------------------------------------------------------------
-- Lookup (dimension) tables: id <-> name, one row per distinct name (first spelling wins)
-- ---------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS Sites (
  id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL,
  PRIMARY KEY (id), UNIQUE KEY NameIdx (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS DNs (
  id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL,
  PRIMARY KEY (id), UNIQUE KEY NameIdx (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS SubmitHosts (
  id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL,
  PRIMARY KEY (id), UNIQUE KEY NameIdx (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS MachineNames (
  id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL,
  PRIMARY KEY (id), UNIQUE KEY NameIdx (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS Queues (
  id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL,
  PRIMARY KEY (id), UNIQUE KEY NameIdx (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS VOs (
  id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL,
  PRIMARY KEY (id), UNIQUE KEY NameIdx (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS VORoles (
  id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL,
  PRIMARY KEY (id), UNIQUE KEY NameIdx (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS VOGroups (
  id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL,
  PRIMARY KEY (id), UNIQUE KEY NameIdx (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS CloudComputeServices (
  id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL,
  PRIMARY KEY (id), UNIQUE KEY NameIdx (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS StorageSystems (
  id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL,
  PRIMARY KEY (id), UNIQUE KEY NameIdx (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS StorageShares (
  id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL,
  PRIMARY KEY (id), UNIQUE KEY NameIdx (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS StorageMedia (
  id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL,
  PRIMARY KEY (id), UNIQUE KEY NameIdx (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS StorageClasses (
  id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL,
  PRIMARY KEY (id), UNIQUE KEY NameIdx (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS UserIdentities (
  id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL,
  PRIMARY KEY (id), UNIQUE KEY NameIdx (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS GroupNames (
  id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL,
  PRIMARY KEY (id), UNIQUE KEY NameIdx (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS SubGroups (
  id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL,
  PRIMARY KEY (id), UNIQUE KEY NameIdx (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS Roles (
  id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL,
  PRIMARY KEY (id), UNIQUE KEY NameIdx (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- ---------------------------------------------------------------------------------
-- Bookkeeping
-- ---------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS SchemaVersion (
  Version INT NOT NULL,
  AppliedTime TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (Version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

INSERT IGNORE INTO SchemaVersion (Version) VALUES (1);

-- LastUpdated['sent'] is the unloader's "latest" watermark.
CREATE TABLE IF NOT EXISTS LastUpdated (
  UpdateTime TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  Type VARCHAR(255) NOT NULL,
  PRIMARY KEY (Type)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- ---------------------------------------------------------------------------------
-- Grid accounting
-- ---------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS JobRecords (
  UpdateTime TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  SiteID INT NOT NULL,
  SubmitHostID INT NOT NULL,
  MachineNameID INT NOT NULL,
  QueueID INT NOT NULL,
  LocalJobId VARCHAR(255) NOT NULL,
  LocalUserId VARCHAR(255) NOT NULL,
  GlobalUserNameID INT NOT NULL,
  FQAN VARCHAR(255) NOT NULL,
  VOID INT NOT NULL,
  VOGroupID INT NOT NULL,
  VORoleID INT NOT NULL,
  WallDuration BIGINT UNSIGNED NOT NULL,
  CpuDuration BIGINT UNSIGNED NOT NULL,
  Processors INT UNSIGNED NOT NULL DEFAULT 0,
  NodeCount INT UNSIGNED NOT NULL DEFAULT 0,
  StartTime DATETIME NOT NULL,
  EndTime DATETIME NOT NULL,
  EndYear SMALLINT UNSIGNED NOT NULL,
  EndMonth TINYINT UNSIGNED NOT NULL,
  InfrastructureDescription VARCHAR(100) NOT NULL,
  InfrastructureType VARCHAR(20) NOT NULL,
  MemoryReal BIGINT UNSIGNED NULL,
  MemoryVirtual BIGINT UNSIGNED NULL,
  ServiceLevelType VARCHAR(50) NOT NULL,
  ServiceLevel DECIMAL(10,3) NOT NULL,
  PublisherDNID INT NOT NULL,
  PRIMARY KEY (SiteID, LocalJobId, EndTime),
  -- the summariser works per site-month; together with the primary key columns this
  -- index holds every column SummariseJobs groups or sums
  KEY SummaryIdx (SiteID, EndYear, EndMonth, VOID, GlobalUserNameID, VOGroupID, VORoleID,
                  SubmitHostID, InfrastructureType, ServiceLevelType, ServiceLevel,
                  NodeCount, Processors, WallDuration, CpuDuration),
  KEY UpdateTimeIdx (UpdateTime),
  KEY EndTimeIdx (EndTime)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS Summaries (
  UpdateTime TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  SiteID INT NOT NULL,
  Month INT NOT NULL,
  Year INT NOT NULL,
  GlobalUserNameID INT NOT NULL,
  VOID INT NOT NULL,
  VOGroupID INT NOT NULL,
  VORoleID INT NOT NULL,
  SubmitHostID INT NOT NULL,
  InfrastructureType VARCHAR(20) NOT NULL,
  InfrastructureDescription VARCHAR(100) NOT NULL,
  ServiceLevelType VARCHAR(50) NOT NULL,
  ServiceLevel DECIMAL(10,3) NOT NULL,
  NodeCount INT UNSIGNED NOT NULL,
  Processors INT UNSIGNED NOT NULL,
  EarliestEndTime DATETIME NULL,
  LatestEndTime DATETIME NULL,
  WallDuration BIGINT UNSIGNED NOT NULL,
  CpuDuration BIGINT UNSIGNED NOT NULL,
  NumberOfJobs BIGINT UNSIGNED NOT NULL,
  PublisherDNID INT NOT NULL,
  PRIMARY KEY (SiteID, Month, Year, GlobalUserNameID, VOID, VORoleID, VOGroupID, SubmitHostID,
               InfrastructureType, ServiceLevelType, ServiceLevel, NodeCount, Processors),
  KEY UpdateTimeIdx (UpdateTime)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS NormalisedSummaries (
  UpdateTime TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  SiteID INT NOT NULL,
  Month INT NOT NULL,
  Year INT NOT NULL,
  GlobalUserNameID INT NOT NULL,
  VOID INT NOT NULL,
  VOGroupID INT NOT NULL,
  VORoleID INT NOT NULL,
  SubmitHostID INT NOT NULL,
  Infrastructure VARCHAR(20) NOT NULL,
  InfrastructureDescription VARCHAR(100) NOT NULL,
  ServiceLevelType VARCHAR(50) NOT NULL DEFAULT '',
  NodeCount INT UNSIGNED NOT NULL DEFAULT 0,
  Processors INT UNSIGNED NOT NULL DEFAULT 0,
  EarliestEndTime DATETIME NULL,
  LatestEndTime DATETIME NULL,
  WallDuration BIGINT UNSIGNED NOT NULL,
  CpuDuration BIGINT UNSIGNED NOT NULL,
  NormalisedWallDuration BIGINT UNSIGNED NOT NULL,
  NormalisedCpuDuration BIGINT UNSIGNED NOT NULL,
  NumberOfJobs BIGINT UNSIGNED NOT NULL,
  PublisherDNID INT NOT NULL,
  PRIMARY KEY (SiteID, Month, Year, GlobalUserNameID, VOID, VORoleID, VOGroupID, SubmitHostID,
               Infrastructure, NodeCount, Processors, ServiceLevelType),
  KEY UpdateTimeIdx (UpdateTime)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- Written only by the summariser (jobs, then summaries, then normalised summaries).
CREATE TABLE IF NOT EXISTS HybridSuperSummaries (
  UpdateTime TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  SiteID INT NOT NULL,
  Month INT NOT NULL,
  Year INT NOT NULL,
  GlobalUserNameID INT NOT NULL,
  VOID INT NOT NULL,
  VOGroupID INT NOT NULL,
  VORoleID INT NOT NULL,
  SubmitHostID INT NOT NULL,
  Infrastructure VARCHAR(20) NOT NULL,
  InfrastructureDescription VARCHAR(100) NOT NULL,
  ServiceLevelType VARCHAR(50) NOT NULL,
  ServiceLevel DECIMAL(10,3) NOT NULL DEFAULT 0,
  NodeCount INT UNSIGNED NOT NULL,
  Processors INT UNSIGNED NOT NULL,
  EarliestEndTime DATETIME NULL,
  LatestEndTime DATETIME NULL,
  WallDuration BIGINT UNSIGNED NOT NULL,
  CpuDuration BIGINT UNSIGNED NOT NULL,
  NormalisedWallDuration BIGINT UNSIGNED NOT NULL,
  NormalisedCpuDuration BIGINT UNSIGNED NOT NULL,
  NumberOfJobs BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (SiteID, Month, Year, GlobalUserNameID, VOID, VORoleID, VOGroupID, SubmitHostID,
               Infrastructure, ServiceLevelType, ServiceLevel, NodeCount, Processors),
  -- the unloader sends super summaries by EarliestEndTime (current and previous month)
  KEY EarliestEndTimeIdx (EarliestEndTime)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS SyncRecords (
  UpdateTime TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  SiteID INT NOT NULL,
  SubmitHostID INT NOT NULL,
  NumberOfJobs BIGINT UNSIGNED NOT NULL,
  Month INT NOT NULL,
  Year INT NOT NULL,
  PublisherDNID INT NOT NULL,
  PRIMARY KEY (SiteID, SubmitHostID, Month, Year),
  KEY UpdateTimeIdx (UpdateTime)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- ---------------------------------------------------------------------------------
-- Summariser bookkeeping (apel/db/pending.py): what loads changed since the summariser's
-- last run. The loader inserts in the same transaction as the records; apelsummariser
-- deletes what it has processed. Insert-only with auto-increment ids and no unique
-- key, so concurrent loaders never wait on each other here.
-- ---------------------------------------------------------------------------------

-- HSS keys fed by loaded (or replaced) jobs, summaries and normalised summaries. An entry
-- with NumberOfJobs NULL means "recompute this key from its sources"; one with the delta
-- columns set means "these jobs were added at this key and nothing was replaced" (the
-- summariser adds them to the HSS row). The summariser reads and deletes the entries of
-- whole site-months: the primary key keeps each site-month's entries together (a load
-- adds to the end of each site-month it touches); IdIdx serves the auto-increment.
CREATE TABLE IF NOT EXISTS PendingSummaryKeys (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  SiteID INT NOT NULL,
  Month INT NOT NULL,
  Year INT NOT NULL,
  GlobalUserNameID INT NOT NULL,
  VOID INT NOT NULL,
  VOGroupID INT NOT NULL,
  VORoleID INT NOT NULL,
  SubmitHostID INT NOT NULL,
  Infrastructure VARCHAR(20) NOT NULL,
  ServiceLevelType VARCHAR(50) NOT NULL,
  ServiceLevel DECIMAL(10,3) NOT NULL,
  NodeCount INT UNSIGNED NOT NULL,
  Processors INT UNSIGNED NOT NULL,
  InfrastructureDescription VARCHAR(100) NULL,
  EarliestEndTime DATETIME NULL,
  LatestEndTime DATETIME NULL,
  WallDuration BIGINT UNSIGNED NULL,
  CpuDuration BIGINT UNSIGNED NULL,
  NumberOfJobs BIGINT UNSIGNED NULL,
  PRIMARY KEY (SiteID, Month, Year, id),
  KEY IdIdx (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- HSS keys whose row has no source left (its jobs moved to other keys; HSS is never
-- deleted from), kept by every recomputation: a job delta must not be added to such a
-- stale row, the key is recomputed instead.
CREATE TABLE IF NOT EXISTS StaleSummaryKeys (
  SiteID INT NOT NULL,
  Month INT NOT NULL,
  Year INT NOT NULL,
  GlobalUserNameID INT NOT NULL,
  VOID INT NOT NULL,
  VOGroupID INT NOT NULL,
  VORoleID INT NOT NULL,
  SubmitHostID INT NOT NULL,
  Infrastructure VARCHAR(20) NOT NULL,
  ServiceLevelType VARCHAR(50) NOT NULL,
  ServiceLevel DECIMAL(10,3) NOT NULL,
  NodeCount INT UNSIGNED NOT NULL,
  Processors INT UNSIGNED NOT NULL,
  PRIMARY KEY (SiteID, Month, Year, GlobalUserNameID, VOID, VORoleID, VOGroupID, SubmitHostID,
               Infrastructure, ServiceLevelType, ServiceLevel, NodeCount, Processors)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- One row. Each load_message transaction first reads it LOCK IN SHARE MODE (loaders do not
-- wait on each other), each summariser transaction FOR UPDATE: a summariser transaction
-- sees a fixed set of committed loads, so no job is both in a recomputation and in a
-- delta applied later.
CREATE TABLE IF NOT EXISTS SummariserGate (
  id TINYINT UNSIGNED NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

INSERT IGNORE INTO SummariserGate (id) VALUES (1);

-- Site-months of loaded cloud records and of the stored records of the same VMs.
CREATE TABLE IF NOT EXISTS PendingCloudMonths (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  SiteID INT NOT NULL,
  Year INT NOT NULL,
  Month INT NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- ---------------------------------------------------------------------------------
-- Cloud accounting
-- ---------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS CloudRecords (
  UpdateTime TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  VMUUID VARCHAR(255) NOT NULL,
  SiteID INT NOT NULL,
  CloudComputeServiceID INT NOT NULL,
  MachineName VARCHAR(255) NOT NULL,
  LocalUserId VARCHAR(255) NOT NULL,
  LocalGroupId VARCHAR(255) NOT NULL,
  GlobalUserNameID INT NOT NULL,
  FQAN VARCHAR(255) NOT NULL,
  VOID INT NOT NULL,
  VOGroupID INT NOT NULL,
  VORoleID INT NOT NULL,
  Status VARCHAR(255) NOT NULL,
  StartTime DATETIME NULL,
  EndTime DATETIME NULL,
  RecordCreateTime DATETIME NULL,
  MeasurementTime DATETIME NULL,
  MeasurementMonth TINYINT UNSIGNED NOT NULL,
  MeasurementYear SMALLINT UNSIGNED NOT NULL,
  SuspendDuration BIGINT UNSIGNED NULL,
  WallDuration BIGINT UNSIGNED NULL,
  CpuDuration BIGINT UNSIGNED NULL,
  CpuCount DECIMAL(10,3) UNSIGNED NOT NULL DEFAULT 0,
  NetworkType VARCHAR(255) NOT NULL,
  NetworkInbound BIGINT UNSIGNED NULL,
  NetworkOutbound BIGINT UNSIGNED NULL,
  PublicIPCount BIGINT UNSIGNED NULL,
  Memory BIGINT UNSIGNED NULL,
  Disk BIGINT UNSIGNED NULL,
  BenchmarkType VARCHAR(50) NOT NULL,
  Benchmark DECIMAL(10,3) NOT NULL DEFAULT 0,
  StorageRecordId VARCHAR(255) NOT NULL,
  ImageId VARCHAR(255) NOT NULL,
  CloudType VARCHAR(255) NOT NULL,
  PublisherDNID INT NOT NULL,
  PRIMARY KEY (VMUUID, MeasurementMonth, MeasurementYear),
  -- SummariseVMs: the previous record of the same VM by MeasurementTime
  KEY VMMeasurementIdx (VMUUID, MeasurementTime),
  -- SummariseVMs: the records of one site-month
  KEY SiteMonthIdx (SiteID, MeasurementYear, MeasurementMonth),
  KEY UpdateTimeIdx (UpdateTime)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- Loaded cloud summaries and SummariseVMs output. PublisherDNID is text: the loader
-- stores the publisher's DNs.id (as text), the summariser the word 'summariser'.
-- Sums are signed: SummariseVMs sums deltas, which a restarted VM can make negative.
CREATE TABLE IF NOT EXISTS CloudSummaries (
  UpdateTime TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  SiteID INT NOT NULL,
  CloudComputeServiceID INT NOT NULL,
  Month INT NOT NULL,
  Year INT NOT NULL,
  GlobalUserNameID INT NOT NULL,
  VOID INT NOT NULL,
  VOGroupID INT NOT NULL,
  VORoleID INT NOT NULL,
  Status VARCHAR(255) NOT NULL,
  CloudType VARCHAR(255) NOT NULL,
  ImageId VARCHAR(255) NOT NULL,
  EarliestStartTime DATETIME NULL,
  LatestStartTime DATETIME NULL,
  WallDuration BIGINT NULL,
  CpuDuration BIGINT NULL,
  CpuCount DECIMAL(10,3) UNSIGNED NOT NULL DEFAULT 0,
  NetworkInbound BIGINT NULL,
  NetworkOutbound BIGINT NULL,
  Memory BIGINT NULL,
  Disk BIGINT NULL,
  BenchmarkType VARCHAR(50) NOT NULL,
  Benchmark DECIMAL(10,3) NOT NULL DEFAULT 0,
  NumberOfVMs BIGINT NOT NULL,
  PublisherDNID VARCHAR(255) NOT NULL,
  PRIMARY KEY (SiteID, CloudComputeServiceID, Month, Year, GlobalUserNameID, VOID, VOGroupID, VORoleID,
               Status, ImageId, CpuCount, BenchmarkType, Benchmark),
  KEY UpdateTimeIdx (UpdateTime)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- ---------------------------------------------------------------------------------
-- Storage accounting (StAR). The publisher DN is not stored for storage records.
-- ---------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS StarRecords (
  UpdateTime TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  RecordId VARCHAR(255) NOT NULL,
  CreateTime DATETIME NOT NULL,
  StorageSystemID INT NOT NULL,
  SiteID INT NOT NULL,
  StorageShareID INT NOT NULL,
  StorageMediaID INT NOT NULL,
  StorageClassID INT NOT NULL,
  FileCount BIGINT UNSIGNED NULL,
  DirectoryPath VARCHAR(255) NOT NULL,
  LocalUser VARCHAR(255) NOT NULL,
  LocalGroup VARCHAR(255) NOT NULL,
  UserIdentityID INT NOT NULL,
  GroupID INT NOT NULL,
  SubGroupID INT NOT NULL,
  RoleID INT NOT NULL,
  StartTime DATETIME NOT NULL,
  EndTime DATETIME NOT NULL,
  ResourceCapacityUsed BIGINT UNSIGNED NOT NULL,
  LogicalCapacityUsed BIGINT UNSIGNED NULL,
  ResourceCapacityAllocated BIGINT UNSIGNED NULL,
  PRIMARY KEY (RecordId),
  KEY UpdateTimeIdx (UpdateTime)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS GroupAttributes (
  UpdateTime TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  StarRecordID VARCHAR(255) NOT NULL,
  AttributeType VARCHAR(255) NOT NULL,
  AttributeValue VARCHAR(255) NOT NULL,
  PRIMARY KEY (StarRecordID, AttributeType)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- ---------------------------------------------------------------------------------
-- Views: the unloader's table_name values. Column names are the message field names.
-- ---------------------------------------------------------------------------------

CREATE OR REPLACE SQL SECURITY INVOKER VIEW VJobRecords AS
SELECT j.UpdateTime, site.name AS Site, submithost.name AS SubmitHost,
       machine.name AS MachineName, queue.name AS Queue, j.LocalJobId, j.LocalUserId,
       userdn.name AS GlobalUserName, j.FQAN, vo.name AS VO, vogroup.name AS VOGroup,
       vorole.name AS VORole, j.WallDuration, j.CpuDuration, j.Processors, j.NodeCount,
       j.StartTime, j.EndTime, j.InfrastructureDescription, j.InfrastructureType,
       j.MemoryReal, j.MemoryVirtual, j.ServiceLevelType, j.ServiceLevel
FROM JobRecords j
JOIN Sites site ON site.id = j.SiteID
JOIN SubmitHosts submithost ON submithost.id = j.SubmitHostID
JOIN MachineNames machine ON machine.id = j.MachineNameID
JOIN Queues queue ON queue.id = j.QueueID
JOIN DNs userdn ON userdn.id = j.GlobalUserNameID
JOIN VOs vo ON vo.id = j.VOID
JOIN VOGroups vogroup ON vogroup.id = j.VOGroupID
JOIN VORoles vorole ON vorole.id = j.VORoleID;

CREATE OR REPLACE SQL SECURITY INVOKER VIEW VSummaries AS
SELECT s.UpdateTime, site.name AS Site, s.Month, s.Year, userdn.name AS GlobalUserName,
       vo.name AS VO, vogroup.name AS VOGroup, vorole.name AS VORole,
       submithost.name AS SubmitHost, s.InfrastructureType, s.InfrastructureDescription,
       s.ServiceLevelType, s.ServiceLevel, s.NodeCount, s.Processors,
       s.EarliestEndTime, s.LatestEndTime, s.WallDuration, s.CpuDuration, s.NumberOfJobs
FROM Summaries s
JOIN Sites site ON site.id = s.SiteID
JOIN DNs userdn ON userdn.id = s.GlobalUserNameID
JOIN VOs vo ON vo.id = s.VOID
JOIN VOGroups vogroup ON vogroup.id = s.VOGroupID
JOIN VORoles vorole ON vorole.id = s.VORoleID
JOIN SubmitHosts submithost ON submithost.id = s.SubmitHostID;

CREATE OR REPLACE SQL SECURITY INVOKER VIEW VNormalisedSummaries AS
SELECT s.UpdateTime, site.name AS Site, s.Month, s.Year, userdn.name AS GlobalUserName,
       vo.name AS VO, vogroup.name AS VOGroup, vorole.name AS VORole,
       submithost.name AS SubmitHost, s.Infrastructure, s.InfrastructureDescription,
       s.ServiceLevelType, s.NodeCount, s.Processors, s.EarliestEndTime, s.LatestEndTime,
       s.WallDuration, s.CpuDuration, s.NormalisedWallDuration, s.NormalisedCpuDuration,
       s.NumberOfJobs
FROM NormalisedSummaries s
JOIN Sites site ON site.id = s.SiteID
JOIN DNs userdn ON userdn.id = s.GlobalUserNameID
JOIN VOs vo ON vo.id = s.VOID
JOIN VOGroups vogroup ON vogroup.id = s.VOGroupID
JOIN VORoles vorole ON vorole.id = s.VORoleID
JOIN SubmitHosts submithost ON submithost.id = s.SubmitHostID;

-- One row per HSS row; Infrastructure is exposed as InfrastructureType; no normalised columns.
CREATE OR REPLACE SQL SECURITY INVOKER VIEW VSuperSummaries AS
SELECT h.UpdateTime, site.name AS Site, h.Month, h.Year, userdn.name AS GlobalUserName,
       vo.name AS VO, vogroup.name AS VOGroup, vorole.name AS VORole,
       submithost.name AS SubmitHost, h.Infrastructure AS InfrastructureType,
       h.InfrastructureDescription, h.ServiceLevelType, h.ServiceLevel, h.NodeCount,
       h.Processors, h.EarliestEndTime, h.LatestEndTime, h.WallDuration, h.CpuDuration,
       h.NumberOfJobs
FROM HybridSuperSummaries h
JOIN Sites site ON site.id = h.SiteID
JOIN DNs userdn ON userdn.id = h.GlobalUserNameID
JOIN VOs vo ON vo.id = h.VOID
JOIN VOGroups vogroup ON vogroup.id = h.VOGroupID
JOIN VORoles vorole ON vorole.id = h.VORoleID
JOIN SubmitHosts submithost ON submithost.id = h.SubmitHostID;

-- HSS re-aggregated without ServiceLevel. Deterministic where the old view was not:
-- UpdateTime = MAX, InfrastructureDescription = MIN, and the text grouping columns
-- (grouped case-insensitively) show their binary-smallest spelling.
CREATE OR REPLACE SQL SECURITY INVOKER VIEW VNormalisedSuperSummaries AS
SELECT h.UpdateTime, site.name AS Site, h.Month, h.Year, userdn.name AS GlobalUserName,
       vo.name AS VO, vogroup.name AS VOGroup, vorole.name AS VORole,
       submithost.name AS SubmitHost, h.Infrastructure, h.InfrastructureDescription,
       h.ServiceLevelType, h.NodeCount, h.Processors, h.EarliestEndTime, h.LatestEndTime,
       h.WallDuration, h.CpuDuration, h.NormalisedWallDuration, h.NormalisedCpuDuration,
       h.NumberOfJobs
FROM (
  SELECT SiteID, Month, Year, GlobalUserNameID, VOID, VORoleID, VOGroupID, SubmitHostID,
         MAX(UpdateTime) AS UpdateTime,
         MIN(Infrastructure COLLATE utf8mb4_bin) AS Infrastructure,
         MIN(InfrastructureDescription COLLATE utf8mb4_bin) AS InfrastructureDescription,
         MIN(ServiceLevelType COLLATE utf8mb4_bin) AS ServiceLevelType,
         NodeCount, Processors,
         MIN(EarliestEndTime) AS EarliestEndTime, MAX(LatestEndTime) AS LatestEndTime,
         SUM(WallDuration) AS WallDuration, SUM(CpuDuration) AS CpuDuration,
         SUM(NormalisedWallDuration) AS NormalisedWallDuration,
         SUM(NormalisedCpuDuration) AS NormalisedCpuDuration,
         SUM(NumberOfJobs) AS NumberOfJobs
  FROM HybridSuperSummaries
  GROUP BY SiteID, Month, Year, GlobalUserNameID, VOID, VORoleID, VOGroupID, SubmitHostID,
           Infrastructure, ServiceLevelType, NodeCount, Processors
) h
JOIN Sites site ON site.id = h.SiteID
JOIN DNs userdn ON userdn.id = h.GlobalUserNameID
JOIN VOs vo ON vo.id = h.VOID
JOIN VOGroups vogroup ON vogroup.id = h.VOGroupID
JOIN VORoles vorole ON vorole.id = h.VORoleID
JOIN SubmitHosts submithost ON submithost.id = h.SubmitHostID;

CREATE OR REPLACE SQL SECURITY INVOKER VIEW VSyncRecords AS
SELECT s.UpdateTime, site.name AS Site, submithost.name AS SubmitHost, s.NumberOfJobs,
       s.Month, s.Year
FROM SyncRecords s
JOIN Sites site ON site.id = s.SiteID
JOIN SubmitHosts submithost ON submithost.id = s.SubmitHostID;

CREATE OR REPLACE SQL SECURITY INVOKER VIEW VCloudRecords AS
SELECT c.UpdateTime, c.VMUUID, site.name AS SiteName, ccs.name AS CloudComputeService,
       c.MachineName, c.LocalUserId, c.LocalGroupId, userdn.name AS GlobalUserName, c.FQAN,
       vo.name AS VO, vogroup.name AS VOGroup, vorole.name AS VORole, c.Status,
       c.StartTime, c.EndTime, c.RecordCreateTime, c.MeasurementTime, c.MeasurementMonth,
       c.MeasurementYear, c.SuspendDuration, c.WallDuration, c.CpuDuration, c.CpuCount,
       c.NetworkType, c.NetworkInbound, c.NetworkOutbound, c.PublicIPCount, c.Memory, c.Disk,
       c.BenchmarkType, c.Benchmark, c.StorageRecordId, c.ImageId, c.CloudType
FROM CloudRecords c
JOIN Sites site ON site.id = c.SiteID
JOIN CloudComputeServices ccs ON ccs.id = c.CloudComputeServiceID
JOIN DNs userdn ON userdn.id = c.GlobalUserNameID
JOIN VOs vo ON vo.id = c.VOID
JOIN VOGroups vogroup ON vogroup.id = c.VOGroupID
JOIN VORoles vorole ON vorole.id = c.VORoleID;

CREATE OR REPLACE SQL SECURITY INVOKER VIEW VAnonCloudRecords AS
SELECT c.UpdateTime, c.VMUUID, site.name AS SiteName, ccs.name AS CloudComputeService,
       c.MachineName, c.LocalUserId, c.LocalGroupId, c.GlobalUserNameID, c.FQAN,
       vo.name AS VO, vogroup.name AS VOGroup, vorole.name AS VORole, c.Status,
       c.StartTime, c.EndTime, c.RecordCreateTime, c.MeasurementTime, c.MeasurementMonth,
       c.MeasurementYear, c.SuspendDuration, c.WallDuration, c.CpuDuration, c.CpuCount,
       c.NetworkType, c.NetworkInbound, c.NetworkOutbound, c.PublicIPCount, c.Memory, c.Disk,
       c.BenchmarkType, c.Benchmark, c.StorageRecordId, c.ImageId, c.CloudType
FROM CloudRecords c
JOIN Sites site ON site.id = c.SiteID
JOIN CloudComputeServices ccs ON ccs.id = c.CloudComputeServiceID
JOIN VOs vo ON vo.id = c.VOID
JOIN VOGroups vogroup ON vogroup.id = c.VOGroupID
JOIN VORoles vorole ON vorole.id = c.VORoleID;

CREATE OR REPLACE SQL SECURITY INVOKER VIEW VCloudSummaries AS
SELECT c.UpdateTime, site.name AS SiteName, ccs.name AS CloudComputeService, c.Month, c.Year,
       userdn.name AS GlobalUserName, vo.name AS VO, vogroup.name AS VOGroup,
       vorole.name AS VORole, c.Status, c.CloudType, c.ImageId, c.EarliestStartTime,
       c.LatestStartTime, c.WallDuration, c.CpuDuration, c.CpuCount, c.NetworkInbound,
       c.NetworkOutbound, c.Memory, c.Disk, c.BenchmarkType, c.Benchmark, c.NumberOfVMs
FROM CloudSummaries c
JOIN Sites site ON site.id = c.SiteID
JOIN CloudComputeServices ccs ON ccs.id = c.CloudComputeServiceID
JOIN DNs userdn ON userdn.id = c.GlobalUserNameID
JOIN VOs vo ON vo.id = c.VOID
JOIN VOGroups vogroup ON vogroup.id = c.VOGroupID
JOIN VORoles vorole ON vorole.id = c.VORoleID;

CREATE OR REPLACE SQL SECURITY INVOKER VIEW VStarRecords AS
SELECT s.UpdateTime, s.RecordId, s.CreateTime, storagesystem.name AS StorageSystem,
       site.name AS Site, storageshare.name AS StorageShare, storagemedia.name AS StorageMedia,
       storageclass.name AS StorageClass, s.FileCount, s.DirectoryPath, s.LocalUser,
       s.LocalGroup, useridentity.name AS UserIdentity, grp.name AS `Group`,
       subgroup.name AS SubGroup, rl.name AS Role, s.StartTime, s.EndTime,
       s.ResourceCapacityUsed, s.LogicalCapacityUsed, s.ResourceCapacityAllocated
FROM StarRecords s
JOIN StorageSystems storagesystem ON storagesystem.id = s.StorageSystemID
JOIN Sites site ON site.id = s.SiteID
JOIN StorageShares storageshare ON storageshare.id = s.StorageShareID
JOIN StorageMedia storagemedia ON storagemedia.id = s.StorageMediaID
JOIN StorageClasses storageclass ON storageclass.id = s.StorageClassID
JOIN UserIdentities useridentity ON useridentity.id = s.UserIdentityID
JOIN GroupNames grp ON grp.id = s.GroupID
JOIN SubGroups subgroup ON subgroup.id = s.SubGroupID
JOIN Roles rl ON rl.id = s.RoleID;
