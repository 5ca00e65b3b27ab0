// Optional, fully self-hosted stores: Qdrant and Neo4j on Azure Container Apps with their data on
// Azure Files, reachable only inside a virtual network that the Function App joins.
// Meant for evaluation and small installations: each store runs as a single replica, and Azure Files
// (SMB) is slower than a local disk. For production, prefer Qdrant Cloud and Neo4j Aura.

@description('Azure region of the network, the environment and the apps.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Unique suffix of the resource names.')
param resourceToken string

@description('Name prefixes of the resource types (abbreviations.json).')
param abbrs object

@description('Log Analytics workspace that receives the container logs.')
param logAnalyticsId string

@description('Container image of Qdrant, pinned: the service needs 1.19.0 or later (BM25 as a sparse vector whose idf is computed over the memories of one user, IdfCorpusParams, new in 1.19.0) and refuses an older server at start; 1.19.0 is the release it is tested against.')
param qdrantImage string = 'docker.io/qdrant/qdrant:v1.19.0'

@description('Container image of Neo4j (community edition).')
param neo4jImage string = 'docker.io/library/neo4j:5.26'

@secure()
@description('API key Qdrant requires from its callers; empty leaves Qdrant open inside the network.')
param qdrantApiKey string = ''

@secure()
@description('Password of the neo4j user; empty skips Neo4j (graph memory stays off).')
param neo4jPassword string = ''

var deployNeo4j = !empty(neo4jPassword)

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: '${abbrs.networkVirtualNetworks}${resourceToken}'
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        '10.40.0.0/16'
      ]
    }
    subnets: [
      {
        // Infrastructure subnet of the Container Apps environment (workload profiles need a delegation).
        name: 'snet-container-apps'
        properties: {
          addressPrefix: '10.40.0.0/24'
          delegations: [
            {
              name: 'container-apps'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
          // The Azure Files account below accepts traffic from this subnet only.
          serviceEndpoints: [
            {
              service: 'Microsoft.Storage'
            }
          ]
        }
      }
      {
        // VNet integration subnet of the Flex Consumption app (Flex uses the same delegation).
        name: 'snet-function-app'
        properties: {
          addressPrefix: '10.40.1.0/24'
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
    ]
  }
}

// Container Apps mounts SMB shares with the account key, so this account (unlike the keyless app
// storage account) keeps shared keys on; its firewall admits only the Container Apps subnet.
resource filesStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_59: false positive: public network access is on, but the firewall denies everything except the Container Apps subnet.
  // checkov:skip=CKV_AZURE_206: zone-redundant; the self-hosted stores are for evaluation, geo-replication is not worth its cost there.
  // checkov:skip=CKV_AZURE_43: the name is 'st' + 'f' + a 13-character lowercase token (16 lowercase letters and digits); checkov cannot evaluate the interpolation.
  name: '${abbrs.storageStorageAccounts}f${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_ZRS'
  }
  properties: {
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Deny'
      virtualNetworkRules: [
        {
          id: vnet.properties.subnets[0].id
          action: 'Allow'
        }
      ]
    }
  }
}

resource fileServices 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' = {
  parent: filesStorage
  name: 'default'
  properties: {
    shareDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource qdrantShare 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = {
  parent: fileServices
  name: 'qdrant'
  properties: {
    shareQuota: 100
  }
}

resource neo4jShare 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = {
  parent: fileServices
  name: 'neo4j'
  properties: {
    shareQuota: 100
  }
}

resource environment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${abbrs.appManagedEnvironments}${resourceToken}'
  location: location
  tags: tags
  properties: {
    // Internal: the apps get no public endpoint at all.
    vnetConfiguration: {
      infrastructureSubnetId: vnet.properties.subnets[0].id
      internal: true
    }
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
    // Logs go to Azure Monitor (diagnostic setting below) rather than with a workspace key.
    appLogsConfiguration: {
      destination: 'azure-monitor'
    }
  }
}

resource qdrantStorage 'Microsoft.App/managedEnvironments/storages@2024-03-01' = {
  parent: environment
  name: 'qdrant'
  properties: {
    azureFile: {
      accountName: filesStorage.name
      accountKey: filesStorage.listKeys().keys[0].value
      shareName: qdrantShare.name
      accessMode: 'ReadWrite'
    }
  }
}

resource neo4jStorage 'Microsoft.App/managedEnvironments/storages@2024-03-01' = {
  parent: environment
  name: 'neo4j'
  properties: {
    azureFile: {
      accountName: filesStorage.name
      accountKey: filesStorage.listKeys().keys[0].value
      shareName: neo4jShare.name
      accessMode: 'ReadWrite'
    }
  }
}

resource environmentLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'container-apps-to-log-analytics'
  scope: environment
  properties: {
    workspaceId: logAnalyticsId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

// An internal environment has no public DNS: a private zone named after its default domain resolves
// the apps' names inside the VNet. The domain is a runtime property of the environment, which cannot
// name a resource here (BCP120), so the zone lives in a module that receives it as a parameter.
module dns 'container-apps-dns.bicep' = {
  name: 'container-apps-dns'
  params: {
    zoneName: environment.properties.defaultDomain
    staticIp: environment.properties.staticIp
    virtualNetworkId: vnet.id
    tags: tags
  }
}

var qdrantSecrets = empty(qdrantApiKey) ? [] : [
  {
    name: 'qdrant-api-key'
    value: qdrantApiKey
  }
]
var qdrantEnv = empty(qdrantApiKey) ? [] : [
  {
    name: 'QDRANT__SERVICE__API_KEY'
    secretRef: 'qdrant-api-key' // checkov:skip=CKV_SECRET_6: the name of a Container Apps secret, not a secret
  }
]

resource qdrant 'Microsoft.App/containerApps@2024-03-01' = {
  name: '${abbrs.appContainerApps}qdrant-${resourceToken}'
  location: location
  tags: tags
  properties: {
    environmentId: environment.id
    workloadProfileName: 'Consumption'
    configuration: {
      ingress: {
        external: false
        targetPort: 6333
        transport: 'http'
        allowInsecure: false
      }
      secrets: qdrantSecrets
    }
    template: {
      containers: [
        {
          name: 'qdrant'
          image: qdrantImage
          resources: {
            cpu: json('1.0')
            memory: '2Gi'
          }
          env: qdrantEnv
          volumeMounts: [
            {
              volumeName: 'data'
              mountPath: '/qdrant/storage'
            }
          ]
        }
      ]
      volumes: [
        {
          name: 'data'
          storageType: 'AzureFile'
          storageName: qdrantStorage.name
        }
      ]
      // One writer per data folder: never more, never fewer (no cold start on the first search).
      scale: {
        minReplicas: 1
        maxReplicas: 1
      }
    }
  }
}

resource neo4j 'Microsoft.App/containerApps@2024-03-01' = if (deployNeo4j) {
  name: '${abbrs.appContainerApps}neo4j-${resourceToken}'
  location: location
  tags: tags
  properties: {
    environmentId: environment.id
    workloadProfileName: 'Consumption'
    configuration: {
      // Bolt is a TCP protocol; TCP ingress is available because the environment has its own VNet.
      ingress: {
        external: false
        transport: 'tcp'
        targetPort: 7687
        exposedPort: 7687
      }
      secrets: [
        {
          name: 'neo4j-auth'
          value: 'neo4j/${neo4jPassword}'
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'neo4j'
          image: neo4jImage
          resources: {
            cpu: json('1.0')
            memory: '2Gi'
          }
          env: [
            {
              name: 'NEO4J_AUTH'
              secretRef: 'neo4j-auth' // checkov:skip=CKV_SECRET_6: the name of a Container Apps secret, not a secret
            }
          ]
          volumeMounts: [
            {
              volumeName: 'data'
              mountPath: '/data'
            }
          ]
        }
      ]
      volumes: [
        {
          name: 'data'
          storageType: 'AzureFile'
          storageName: neo4jStorage.name
        }
      ]
      scale: {
        minReplicas: 1
        maxReplicas: 1
      }
    }
  }
}

// qdrant-client assumes port 6333 when a URL has none, so the HTTPS port is spelled out.
output qdrantUrl string = 'https://${qdrant.properties.configuration.ingress.fqdn}:443'
output neo4jUri string = deployNeo4j ? 'bolt://${neo4j.properties.configuration.ingress.fqdn}:7687' : ''
output functionAppSubnetId string = vnet.properties.subnets[1].id
