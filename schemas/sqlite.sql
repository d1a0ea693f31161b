-- APEL server schema for SQLite (3.24+): the twin of schemas/mysql.sql.
--
-- Same table, view and column names as the MySQL schema; the SQLite backend
-- (apel/db/sqlite_backend.py) creates a missing database file with it. Re-running it
-- is safe (IF NOT EXISTS everywhere). Every table and column is also described in
-- apel/db/tables.py, which tests/test_schema_columns.py compares with this file.
--
-- Matching is case-insensitive and ignores trailing spaces, as on MySQL/MariaDB with a
-- PAD SPACE *_ci collation:
-- * text columns are COLLATE NOCASE (ASCII case folding);
-- * every uniqueness rule that involves text (lookup names, primary keys) is a UNIQUE
--   index on rtrim(column, ' ') COLLATE NOCASE, so 'RAL-LCG2' and 'ral-lcg2 ' collide:
--   a lookup keeps the first spelling, REPLACE keeps the last record. Queries that must
--   use those indexes compare rtrim(column, ' ') = rtrim(?, ' ') COLLATE NOCASE, and
--   the summariser groups text columns by rtrim(column, ' ') COLLATE NOCASE.
-- Types: datetimes are TEXT 'YYYY-MM-DD HH:MM:SS' in UTC; DECIMAL(10,3) columns are REAL
-- holding values already rounded to 3 decimals (exact decimal work: multiply by 1000 and
-- round to an integer); integers are 64-bit. Range and length limits of the MySQL
-- schema are enforced before writing, by apel/db/convert.py, for both backends.
-- A completed cloud VM without EndTime has MeasurementTime NULL and month/year 0.

-- ---------------------------------------------------------------------------------
-- Lookup (dimension) tables
-- ---------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS Sites (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS Sites_NameIdx ON Sites (rtrim(name, ' ') COLLATE NOCASE);

CREATE TABLE IF NOT EXISTS DNs (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS DNs_NameIdx ON DNs (rtrim(name, ' ') COLLATE NOCASE);

CREATE TABLE IF NOT EXISTS SubmitHosts (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS SubmitHosts_NameIdx ON SubmitHosts (rtrim(name, ' ') COLLATE NOCASE);

CREATE TABLE IF NOT EXISTS MachineNames (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS MachineNames_NameIdx ON MachineNames (rtrim(name, ' ') COLLATE NOCASE);

CREATE TABLE IF NOT EXISTS Queues (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS Queues_NameIdx ON Queues (rtrim(name, ' ') COLLATE NOCASE);

CREATE TABLE IF NOT EXISTS VOs (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS VOs_NameIdx ON VOs (rtrim(name, ' ') COLLATE NOCASE);

CREATE TABLE IF NOT EXISTS VORoles (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS VORoles_NameIdx ON VORoles (rtrim(name, ' ') COLLATE NOCASE);

CREATE TABLE IF NOT EXISTS VOGroups (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS VOGroups_NameIdx ON VOGroups (rtrim(name, ' ') COLLATE NOCASE);

CREATE TABLE IF NOT EXISTS CloudComputeServices (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS CloudComputeServices_NameIdx ON CloudComputeServices (rtrim(name, ' ') COLLATE NOCASE);

CREATE TABLE IF NOT EXISTS StorageSystems (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS StorageSystems_NameIdx ON StorageSystems (rtrim(name, ' ') COLLATE NOCASE);

CREATE TABLE IF NOT EXISTS StorageShares (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS StorageShares_NameIdx ON StorageShares (rtrim(name, ' ') COLLATE NOCASE);

CREATE TABLE IF NOT EXISTS StorageMedia (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS StorageMedia_NameIdx ON StorageMedia (rtrim(name, ' ') COLLATE NOCASE);

CREATE TABLE IF NOT EXISTS StorageClasses (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS StorageClasses_NameIdx ON StorageClasses (rtrim(name, ' ') COLLATE NOCASE);

CREATE TABLE IF NOT EXISTS UserIdentities (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS UserIdentities_NameIdx ON UserIdentities (rtrim(name, ' ') COLLATE NOCASE);

CREATE TABLE IF NOT EXISTS GroupNames (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS GroupNames_NameIdx ON GroupNames (rtrim(name, ' ') COLLATE NOCASE);

CREATE TABLE IF NOT EXISTS SubGroups (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS SubGroups_NameIdx ON SubGroups (rtrim(name, ' ') COLLATE NOCASE);

CREATE TABLE IF NOT EXISTS Roles (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS Roles_NameIdx ON Roles (rtrim(name, ' ') COLLATE NOCASE);

-- ---------------------------------------------------------------------------------
-- Bookkeeping
-- ---------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS SchemaVersion (
  Version INTEGER NOT NULL PRIMARY KEY,
  AppliedTime DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT OR IGNORE INTO SchemaVersion (Version) VALUES (1);

CREATE TABLE IF NOT EXISTS LastUpdated (
  UpdateTime DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  Type TEXT NOT NULL COLLATE NOCASE
);
CREATE UNIQUE INDEX IF NOT EXISTS LastUpdated_PK ON LastUpdated (rtrim(Type, ' ') COLLATE NOCASE);

-- ---------------------------------------------------------------------------------
-- Grid accounting
-- ---------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS JobRecords (
  UpdateTime DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  SiteID INTEGER NOT NULL,
  SubmitHostID INTEGER NOT NULL,
  MachineNameID INTEGER NOT NULL,
  QueueID INTEGER NOT NULL,
  LocalJobId TEXT NOT NULL COLLATE NOCASE,
  LocalUserId TEXT NOT NULL COLLATE NOCASE,
  GlobalUserNameID INTEGER NOT NULL,
  FQAN TEXT NOT NULL COLLATE NOCASE,
  VOID INTEGER NOT NULL,
  VOGroupID INTEGER NOT NULL,
  VORoleID INTEGER NOT NULL,
  WallDuration INTEGER NOT NULL,
  CpuDuration INTEGER NOT NULL,
  Processors INTEGER NOT NULL DEFAULT 0,
  NodeCount INTEGER NOT NULL DEFAULT 0,
  StartTime DATETIME NOT NULL,
  EndTime DATETIME NOT NULL,
  EndYear INTEGER NOT NULL,
  EndMonth INTEGER NOT NULL,
  InfrastructureDescription TEXT NOT NULL COLLATE NOCASE,
  InfrastructureType TEXT NOT NULL COLLATE NOCASE,
  MemoryReal INTEGER NULL,
  MemoryVirtual INTEGER NULL,
  ServiceLevelType TEXT NOT NULL COLLATE NOCASE,
  ServiceLevel REAL NOT NULL,
  PublisherDNID INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS JobRecords_PK
  ON JobRecords (SiteID, rtrim(LocalJobId, ' ') COLLATE NOCASE, EndTime);
CREATE INDEX IF NOT EXISTS JobRecords_SummaryIdx ON JobRecords (SiteID, EndYear, EndMonth);
CREATE INDEX IF NOT EXISTS JobRecords_UpdateTimeIdx ON JobRecords (UpdateTime);
CREATE INDEX IF NOT EXISTS JobRecords_EndTimeIdx ON JobRecords (EndTime);

CREATE TABLE IF NOT EXISTS Summaries (
  UpdateTime DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  SiteID INTEGER NOT NULL,
  Month INTEGER NOT NULL,
  Year INTEGER NOT NULL,
  GlobalUserNameID INTEGER NOT NULL,
  VOID INTEGER NOT NULL,
  VOGroupID INTEGER NOT NULL,
  VORoleID INTEGER NOT NULL,
  SubmitHostID INTEGER NOT NULL,
  InfrastructureType TEXT NOT NULL COLLATE NOCASE,
  InfrastructureDescription TEXT NOT NULL COLLATE NOCASE,
  ServiceLevelType TEXT NOT NULL COLLATE NOCASE,
  ServiceLevel REAL NOT NULL,
  NodeCount INTEGER NOT NULL,
  Processors INTEGER NOT NULL,
  EarliestEndTime DATETIME NULL,
  LatestEndTime DATETIME NULL,
  WallDuration INTEGER NOT NULL,
  CpuDuration INTEGER NOT NULL,
  NumberOfJobs INTEGER NOT NULL,
  PublisherDNID INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS Summaries_PK ON Summaries (
  SiteID, Month, Year, GlobalUserNameID, VOID, VORoleID, VOGroupID, SubmitHostID,
  rtrim(InfrastructureType, ' ') COLLATE NOCASE, rtrim(ServiceLevelType, ' ') COLLATE NOCASE,
  ServiceLevel, NodeCount, Processors);
CREATE INDEX IF NOT EXISTS Summaries_UpdateTimeIdx ON Summaries (UpdateTime);

CREATE TABLE IF NOT EXISTS NormalisedSummaries (
  UpdateTime DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  SiteID INTEGER NOT NULL,
  Month INTEGER NOT NULL,
  Year INTEGER NOT NULL,
  GlobalUserNameID INTEGER NOT NULL,
  VOID INTEGER NOT NULL,
  VOGroupID INTEGER NOT NULL,
  VORoleID INTEGER NOT NULL,
  SubmitHostID INTEGER NOT NULL,
  Infrastructure TEXT NOT NULL COLLATE NOCASE,
  InfrastructureDescription TEXT NOT NULL COLLATE NOCASE,
  ServiceLevelType TEXT NOT NULL DEFAULT '' COLLATE NOCASE,
  NodeCount INTEGER NOT NULL DEFAULT 0,
  Processors INTEGER NOT NULL DEFAULT 0,
  EarliestEndTime DATETIME NULL,
  LatestEndTime DATETIME NULL,
  WallDuration INTEGER NOT NULL,
  CpuDuration INTEGER NOT NULL,
  NormalisedWallDuration INTEGER NOT NULL,
  NormalisedCpuDuration INTEGER NOT NULL,
  NumberOfJobs INTEGER NOT NULL,
  PublisherDNID INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS NormalisedSummaries_PK ON NormalisedSummaries (
  SiteID, Month, Year, GlobalUserNameID, VOID, VORoleID, VOGroupID, SubmitHostID,
  rtrim(Infrastructure, ' ') COLLATE NOCASE, NodeCount, Processors,
  rtrim(ServiceLevelType, ' ') COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS NormalisedSummaries_UpdateTimeIdx ON NormalisedSummaries (UpdateTime);

CREATE TABLE IF NOT EXISTS HybridSuperSummaries (
  UpdateTime DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  SiteID INTEGER NOT NULL,
  Month INTEGER NOT NULL,
  Year INTEGER NOT NULL,
  GlobalUserNameID INTEGER NOT NULL,
  VOID INTEGER NOT NULL,
  VOGroupID INTEGER NOT NULL,
  VORoleID INTEGER NOT NULL,
  SubmitHostID INTEGER NOT NULL,
  Infrastructure TEXT NOT NULL COLLATE NOCASE,
  InfrastructureDescription TEXT NOT NULL COLLATE NOCASE,
  ServiceLevelType TEXT NOT NULL COLLATE NOCASE,
  ServiceLevel REAL NOT NULL DEFAULT 0,
  NodeCount INTEGER NOT NULL,
  Processors INTEGER NOT NULL,
  EarliestEndTime DATETIME NULL,
  LatestEndTime DATETIME NULL,
  WallDuration INTEGER NOT NULL,
  CpuDuration INTEGER NOT NULL,
  NormalisedWallDuration INTEGER NOT NULL,
  NormalisedCpuDuration INTEGER NOT NULL,
  NumberOfJobs INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS HybridSuperSummaries_PK ON HybridSuperSummaries (
  SiteID, Month, Year, GlobalUserNameID, VOID, VORoleID, VOGroupID, SubmitHostID,
  rtrim(Infrastructure, ' ') COLLATE NOCASE, rtrim(ServiceLevelType, ' ') COLLATE NOCASE,
  ServiceLevel, NodeCount, Processors);
CREATE INDEX IF NOT EXISTS HybridSuperSummaries_EarliestEndTimeIdx
  ON HybridSuperSummaries (EarliestEndTime);

CREATE TABLE IF NOT EXISTS SyncRecords (
  UpdateTime DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  SiteID INTEGER NOT NULL,
  SubmitHostID INTEGER NOT NULL,
  NumberOfJobs INTEGER NOT NULL,
  Month INTEGER NOT NULL,
  Year INTEGER NOT NULL,
  PublisherDNID INTEGER NOT NULL,
  PRIMARY KEY (SiteID, SubmitHostID, Month, Year)
);
CREATE INDEX IF NOT EXISTS SyncRecords_UpdateTimeIdx ON SyncRecords (UpdateTime);

-- ---------------------------------------------------------------------------------
-- Summariser bookkeeping (apel/db/pending.py): what loads changed since the summariser's
-- last run, written in the load's transaction; apelsummariser deletes what it has
-- processed. JobRecords_SummaryKeyIdx lets an incremental run find a key's jobs.
-- The SQLite backend writes recompute entries only (NumberOfJobs NULL); the delta
-- columns and StaleSummaryKeys mirror the MySQL schema. SQLite serialises writers, so
-- there is no SummariserGate.
-- ---------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS PendingSummaryKeys (
  id INTEGER PRIMARY KEY,
  SiteID INTEGER NOT NULL,
  Month INTEGER NOT NULL,
  Year INTEGER NOT NULL,
  GlobalUserNameID INTEGER NOT NULL,
  VOID INTEGER NOT NULL,
  VOGroupID INTEGER NOT NULL,
  VORoleID INTEGER NOT NULL,
  SubmitHostID INTEGER NOT NULL,
  Infrastructure TEXT NOT NULL COLLATE NOCASE,
  ServiceLevelType TEXT NOT NULL COLLATE NOCASE,
  ServiceLevel REAL NOT NULL,
  NodeCount INTEGER NOT NULL,
  Processors INTEGER NOT NULL,
  InfrastructureDescription TEXT NULL COLLATE NOCASE,
  EarliestEndTime DATETIME NULL,
  LatestEndTime DATETIME NULL,
  WallDuration INTEGER NULL,
  CpuDuration INTEGER NULL,
  NumberOfJobs INTEGER NULL
);
CREATE INDEX IF NOT EXISTS PendingSummaryKeys_SiteMonthIdx ON PendingSummaryKeys (SiteID, Month, Year);

CREATE TABLE IF NOT EXISTS StaleSummaryKeys (
  SiteID INTEGER NOT NULL,
  Month INTEGER NOT NULL,
  Year INTEGER NOT NULL,
  GlobalUserNameID INTEGER NOT NULL,
  VOID INTEGER NOT NULL,
  VOGroupID INTEGER NOT NULL,
  VORoleID INTEGER NOT NULL,
  SubmitHostID INTEGER NOT NULL,
  Infrastructure TEXT NOT NULL COLLATE NOCASE,
  ServiceLevelType TEXT NOT NULL COLLATE NOCASE,
  ServiceLevel REAL NOT NULL,
  NodeCount INTEGER NOT NULL,
  Processors INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS StaleSummaryKeys_PK ON StaleSummaryKeys (
  SiteID, Month, Year, GlobalUserNameID, VOID, VORoleID, VOGroupID, SubmitHostID,
  rtrim(Infrastructure, ' ') COLLATE NOCASE, rtrim(ServiceLevelType, ' ') COLLATE NOCASE,
  ServiceLevel, NodeCount, Processors);

CREATE TABLE IF NOT EXISTS PendingCloudMonths (
  id INTEGER PRIMARY KEY,
  SiteID INTEGER NOT NULL,
  Year INTEGER NOT NULL,
  Month INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS JobRecords_SummaryKeyIdx ON JobRecords (
  SiteID, EndYear, EndMonth, VOID, GlobalUserNameID, VOGroupID, VORoleID, SubmitHostID,
  ServiceLevel, NodeCount, Processors);

-- ---------------------------------------------------------------------------------
-- Cloud accounting
-- ---------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS CloudRecords (
  UpdateTime DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  VMUUID TEXT NOT NULL COLLATE NOCASE,
  SiteID INTEGER NOT NULL,
  CloudComputeServiceID INTEGER NOT NULL,
  MachineName TEXT NOT NULL COLLATE NOCASE,
  LocalUserId TEXT NOT NULL COLLATE NOCASE,
  LocalGroupId TEXT NOT NULL COLLATE NOCASE,
  GlobalUserNameID INTEGER NOT NULL,
  FQAN TEXT NOT NULL COLLATE NOCASE,
  VOID INTEGER NOT NULL,
  VOGroupID INTEGER NOT NULL,
  VORoleID INTEGER NOT NULL,
  Status TEXT NOT NULL COLLATE NOCASE,
  StartTime DATETIME NULL,
  EndTime DATETIME NULL,
  RecordCreateTime DATETIME NULL,
  MeasurementTime DATETIME NULL,
  MeasurementMonth INTEGER NOT NULL,
  MeasurementYear INTEGER NOT NULL,
  SuspendDuration INTEGER NULL,
  WallDuration INTEGER NULL,
  CpuDuration INTEGER NULL,
  CpuCount REAL NOT NULL DEFAULT 0,
  NetworkType TEXT NOT NULL COLLATE NOCASE,
  NetworkInbound INTEGER NULL,
  NetworkOutbound INTEGER NULL,
  PublicIPCount INTEGER NULL,
  Memory INTEGER NULL,
  Disk INTEGER NULL,
  BenchmarkType TEXT NOT NULL COLLATE NOCASE,
  Benchmark REAL NOT NULL DEFAULT 0,
  StorageRecordId TEXT NOT NULL COLLATE NOCASE,
  ImageId TEXT NOT NULL COLLATE NOCASE,
  CloudType TEXT NOT NULL COLLATE NOCASE,
  PublisherDNID INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS CloudRecords_PK
  ON CloudRecords (rtrim(VMUUID, ' ') COLLATE NOCASE, MeasurementMonth, MeasurementYear);
CREATE INDEX IF NOT EXISTS CloudRecords_VMMeasurementIdx
  ON CloudRecords (rtrim(VMUUID, ' ') COLLATE NOCASE, MeasurementTime);
CREATE INDEX IF NOT EXISTS CloudRecords_UpdateTimeIdx ON CloudRecords (UpdateTime);
-- SummariseVMs: the records of one site-month
CREATE INDEX IF NOT EXISTS CloudRecords_SiteMonthIdx ON CloudRecords (SiteID, MeasurementYear, MeasurementMonth);

-- PublisherDNID is text: the loader stores the publisher's DNs.id, the summariser
-- the word 'summariser'. Sums may be negative (SummariseVMs sums deltas).
CREATE TABLE IF NOT EXISTS CloudSummaries (
  UpdateTime DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  SiteID INTEGER NOT NULL,
  CloudComputeServiceID INTEGER NOT NULL,
  Month INTEGER NOT NULL,
  Year INTEGER NOT NULL,
  GlobalUserNameID INTEGER NOT NULL,
  VOID INTEGER NOT NULL,
  VOGroupID INTEGER NOT NULL,
  VORoleID INTEGER NOT NULL,
  Status TEXT NOT NULL COLLATE NOCASE,
  CloudType TEXT NOT NULL COLLATE NOCASE,
  ImageId TEXT NOT NULL COLLATE NOCASE,
  EarliestStartTime DATETIME NULL,
  LatestStartTime DATETIME NULL,
  WallDuration INTEGER NULL,
  CpuDuration INTEGER NULL,
  CpuCount REAL NOT NULL DEFAULT 0,
  NetworkInbound INTEGER NULL,
  NetworkOutbound INTEGER NULL,
  Memory INTEGER NULL,
  Disk INTEGER NULL,
  BenchmarkType TEXT NOT NULL COLLATE NOCASE,
  Benchmark REAL NOT NULL DEFAULT 0,
  NumberOfVMs INTEGER NOT NULL,
  PublisherDNID TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS CloudSummaries_PK ON CloudSummaries (
  SiteID, CloudComputeServiceID, Month, Year, GlobalUserNameID, VOID, VOGroupID, VORoleID,
  rtrim(Status, ' ') COLLATE NOCASE, rtrim(ImageId, ' ') COLLATE NOCASE, CpuCount,
  rtrim(BenchmarkType, ' ') COLLATE NOCASE, Benchmark);
CREATE INDEX IF NOT EXISTS CloudSummaries_UpdateTimeIdx ON CloudSummaries (UpdateTime);

-- ---------------------------------------------------------------------------------
-- Storage accounting (StAR)
-- ---------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS StarRecords (
  UpdateTime DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  RecordId TEXT NOT NULL COLLATE NOCASE,
  CreateTime DATETIME NOT NULL,
  StorageSystemID INTEGER NOT NULL,
  SiteID INTEGER NOT NULL,
  StorageShareID INTEGER NOT NULL,
  StorageMediaID INTEGER NOT NULL,
  StorageClassID INTEGER NOT NULL,
  FileCount INTEGER NULL,
  DirectoryPath TEXT NOT NULL COLLATE NOCASE,
  LocalUser TEXT NOT NULL COLLATE NOCASE,
  LocalGroup TEXT NOT NULL COLLATE NOCASE,
  UserIdentityID INTEGER NOT NULL,
  GroupID INTEGER NOT NULL,
  SubGroupID INTEGER NOT NULL,
  RoleID INTEGER NOT NULL,
  StartTime DATETIME NOT NULL,
  EndTime DATETIME NOT NULL,
  ResourceCapacityUsed INTEGER NOT NULL,
  LogicalCapacityUsed INTEGER NULL,
  ResourceCapacityAllocated INTEGER NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS StarRecords_PK ON StarRecords (rtrim(RecordId, ' ') COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS StarRecords_UpdateTimeIdx ON StarRecords (UpdateTime);

CREATE TABLE IF NOT EXISTS GroupAttributes (
  UpdateTime DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  StarRecordID TEXT NOT NULL COLLATE NOCASE,
  AttributeType TEXT NOT NULL COLLATE NOCASE,
  AttributeValue TEXT NOT NULL COLLATE NOCASE
);
CREATE UNIQUE INDEX IF NOT EXISTS GroupAttributes_PK ON GroupAttributes (
  rtrim(StarRecordID, ' ') COLLATE NOCASE, rtrim(AttributeType, ' ') COLLATE NOCASE);

-- ---------------------------------------------------------------------------------
-- Views (same names and columns as the MySQL schema)
-- ---------------------------------------------------------------------------------

CREATE VIEW IF NOT EXISTS VJobRecords AS
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

CREATE VIEW IF NOT EXISTS VSummaries AS
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

CREATE VIEW IF NOT EXISTS VNormalisedSummaries AS
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
CREATE VIEW IF NOT EXISTS VSuperSummaries AS
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
CREATE VIEW IF NOT EXISTS VNormalisedSuperSummaries AS
SELECT h.UpdateTime, site.name AS Site, h.Month, h.Year, userdn.name AS GlobalUserName,
       vo.name AS VO, vogroup.name AS VOGroup, vorole.name AS VORole,
       submithost.name AS SubmitHost, h.Infrastructure, h.InfrastructureDescription,
       h.ServiceLevelType, h.NodeCount, h.Processors, h.EarliestEndTime, h.LatestEndTime,
       h.WallDuration, h.CpuDuration, h.NormalisedWallDuration, h.NormalisedCpuDuration,
       h.NumberOfJobs
FROM (
  SELECT SiteID, Month, Year, GlobalUserNameID, VOID, VORoleID, VOGroupID, SubmitHostID,
         MAX(UpdateTime) AS UpdateTime,
         MIN(Infrastructure COLLATE BINARY) AS Infrastructure,
         MIN(InfrastructureDescription COLLATE BINARY) AS InfrastructureDescription,
         MIN(ServiceLevelType COLLATE BINARY) AS ServiceLevelType,
         NodeCount, Processors,
         MIN(EarliestEndTime) AS EarliestEndTime, MAX(LatestEndTime) AS LatestEndTime,
         SUM(WallDuration) AS WallDuration, SUM(CpuDuration) AS CpuDuration,
         SUM(NormalisedWallDuration) AS NormalisedWallDuration,
         SUM(NormalisedCpuDuration) AS NormalisedCpuDuration,
         SUM(NumberOfJobs) AS NumberOfJobs
  FROM HybridSuperSummaries
  GROUP BY SiteID, Month, Year, GlobalUserNameID, VOID, VORoleID, VOGroupID, SubmitHostID,
           rtrim(Infrastructure, ' ') COLLATE NOCASE, rtrim(ServiceLevelType, ' ') COLLATE NOCASE,
           NodeCount, Processors
) h
JOIN Sites site ON site.id = h.SiteID
JOIN DNs userdn ON userdn.id = h.GlobalUserNameID
JOIN VOs vo ON vo.id = h.VOID
JOIN VOGroups vogroup ON vogroup.id = h.VOGroupID
JOIN VORoles vorole ON vorole.id = h.VORoleID
JOIN SubmitHosts submithost ON submithost.id = h.SubmitHostID;

CREATE VIEW IF NOT EXISTS VSyncRecords AS
SELECT s.UpdateTime, site.name AS Site, submithost.name AS SubmitHost, s.NumberOfJobs,
       s.Month, s.Year
FROM SyncRecords s
JOIN Sites site ON site.id = s.SiteID
JOIN SubmitHosts submithost ON submithost.id = s.SubmitHostID;

CREATE VIEW IF NOT EXISTS VCloudRecords AS
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

CREATE VIEW IF NOT EXISTS VAnonCloudRecords AS
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

CREATE VIEW IF NOT EXISTS VCloudSummaries AS
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

CREATE VIEW IF NOT EXISTS VStarRecords AS
SELECT s.UpdateTime, s.RecordId, s.CreateTime, storagesystem.name AS StorageSystem,
       site.name AS Site, storageshare.name AS StorageShare, storagemedia.name AS StorageMedia,
       storageclass.name AS StorageClass, s.FileCount, s.DirectoryPath, s.LocalUser,
       s.LocalGroup, useridentity.name AS UserIdentity, grp.name AS "Group",
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
